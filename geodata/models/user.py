"""Accounts (用户), their API tokens and the grids a grid member is limited to."""

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import (Boolean, CheckConstraint, ForeignKey, Integer, String,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime

USER_ROLES = ("viewer", "inspector", "supervisor", "planner", "admin")


def _utcnow():
    return datetime.now(timezone.utc)


class User(Base):
    """A person who logs in.

    ``password_hash`` is ``scrypt$n$r$p$salt$hash`` (:mod:`hashlib`, see
    :mod:`geodata.services.users`); the password itself is never stored.
    A user with rows in ``user_grids`` may only log and move hazards in
    those grids and their sub-grids.  ``active`` False (``gridmap users
    disable``) refuses logins, sessions and tokens.  ``session_version`` is
    copied into each login's signed cookie; bumping it (logout, password or
    role change, disable, token revocation) rejects every cookie issued
    before, so a captured cookie stops working on the server side.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'inspector', 'supervisor', 'planner', 'admin')",
                        name="role_known"),
        UniqueConstraint("username"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    grids = relationship("UserGrid", cascade="all, delete-orphan", back_populates="user")
    tokens = relationship("ApiToken", cascade="all, delete-orphan", back_populates="user")

    __mapper_args__ = {"version_id_col": version}

    @property
    def grid_roots(self):
        """The ids of the grids the user is limited to (as ``Account.grid_roots``)."""
        return tuple(link.grid_id for link in self.grids)


class UserGrid(Base):
    """One grid a grid member serves (limits where they may act)."""

    __tablename__ = "user_grids"
    __table_args__ = (UniqueConstraint("user_id", "grid_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="RESTRICT"), index=True)

    user = relationship("User", back_populates="grids")
    grid = relationship("Grid")


class ApiToken(Base):
    """An API token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user = relationship("User", back_populates="tokens")
