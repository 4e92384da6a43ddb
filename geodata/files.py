"""Files written next to the database's work: whole or not at all.

Exports go to a temporary file beside the target and are renamed onto it
only when complete, so a failure leaves the old file (or none), never half
of one.  Files that belong to a database row (hazard photos) are written
to a temporary file during the transaction and moved into place only after
it commits; a rollback, or a session closed without commit, deletes them.

Text bound for a spreadsheet (every CSV and XLSX export) goes through
:func:`spreadsheet_text`, which :func:`spreadsheet_value` undoes on import.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from geodata.errors import ValidationError

_PENDING = "gridmap.pending_files"
_FORMULA_START = ("=", "+", "-", "@")


def _formula_like(text):
    # Spreadsheets evaluate = + - @ as a formula (CSV injection), also after leading blanks,
    # which some of them skip, and start a new cell at a tab or line break.
    return text[:1] in ("\t", "\r", "\n") or text.lstrip()[:1] in _FORMULA_START


def spreadsheet_text(value):
    """Return ``value`` prefixed with ``'`` if a spreadsheet would run it as a formula.

    Text that already starts with quotes before such a start gets one more,
    so that :func:`spreadsheet_value` gives back exactly the stored text.
    Anything but text is returned as it is.
    """
    if isinstance(value, str) and _formula_like(value.lstrip("'")):
        return "'" + value
    return value


def spreadsheet_value(value):
    """Undo :func:`spreadsheet_text`: a cell of an exported CSV read back as the stored text."""
    if isinstance(value, str) and value.startswith("'") and _formula_like(value.lstrip("'")):
        return value[1:]
    return value


def partial_path(path):
    """A fresh hidden name beside ``path``, keeping its suffix (drivers choose by it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}")


def unwritable(path, exc):
    """Return the error for an ``OSError`` met writing ``path``.

    A missing folder, no permission, a full disk: the message names
    ``path``, not the temporary file beside it that failed.
    """
    return ValidationError(f"cannot write {path}: {exc.strerror or exc}",
                           code="unwritable_output", details={"path": str(path)})


def check_writable(path):
    """Refuse an output path that cannot be written, before any work (exit 2, no file).

    Raises
    ------
    ValidationError
        ``unwritable_output`` naming the path and why.
    """
    path = Path(path)
    reason = None
    if path.is_dir():
        reason = "is a folder"
    elif not path.parent.is_dir():
        reason = f"its folder {path.parent} does not exist"
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        reason = f"its folder {path.parent} is not writable"
    elif path.exists() and not os.access(path, os.W_OK):
        reason = "is not writable"
    if reason:
        raise ValidationError(f"cannot write {path}: {reason}", code="unwritable_output",
                              details={"path": str(path)})


@contextmanager
def atomic_write(path):
    """Yield a temporary path to write; it replaces ``path`` only if the block succeeds.

    Any error, or Ctrl-C, deletes the temporary file and leaves ``path`` as it was.

    Raises
    ------
    ValidationError
        ``unwritable_output`` (:func:`unwritable`) for an ``OSError`` on the way.
    """
    path = Path(path)
    check_writable(path)
    temp = partial_path(path)
    try:
        yield temp
        os.replace(temp, path)
    except OSError as exc:
        raise unwritable(path, exc) from None
    finally:
        temp.unlink(missing_ok=True)


def write_on_commit(session, path, data):
    """Write ``data`` to ``path`` as part of ``session``'s transaction.

    The bytes are written now, to a temporary file in ``path``'s folder, so a
    full disk fails before the commit; the rename onto ``path`` happens after
    the commit.  If the transaction rolls back, or ends without a commit,
    the temporary file is deleted and ``path`` never appears.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = partial_path(path)
    # Registered before writing: a failed write is cleaned up by the rollback too.
    session.info.setdefault(_PENDING, []).append((temp, path))
    temp.write_bytes(data)


@event.listens_for(Session, "after_commit")
def _move_pending(session):
    for temp, path in session.info.get(_PENDING, ()):
        os.replace(temp, path)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session, transaction):
    if transaction.parent is None:  # the outermost transaction (a savepoint is not the end)
        for temp, _ in session.info.pop(_PENDING, ()):
            temp.unlink(missing_ok=True)
