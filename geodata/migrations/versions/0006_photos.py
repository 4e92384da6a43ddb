"""Photos: tag, thumbnail and pixel size; parks may require an after-photo to close.

Only adds columns (plain ``ALTER TABLE ... ADD COLUMN``, no table copy).
Photos stored before this revision keep their uploaded file and get no
thumbnail (NULL); their tag is ``after`` when a supervision record cites
them (a photo offered as proof of closing), ``before`` otherwise.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    """Add ``hazard_photos.tag/thumbnail_name/width/height`` and ``parks.require_after_photo``."""
    op.add_column("hazard_photos", sa.Column("tag", sa.String(8), nullable=False,
                                             server_default="before"))
    op.add_column("hazard_photos", sa.Column("thumbnail_name", sa.String(64)))
    op.add_column("hazard_photos", sa.Column("width", sa.Integer))
    op.add_column("hazard_photos", sa.Column("height", sa.Integer))
    op.execute("UPDATE hazard_photos SET tag = 'after' WHERE id IN "
               "(SELECT photo_id FROM supervisions WHERE photo_id IS NOT NULL)")
    op.add_column("parks", sa.Column("require_after_photo", sa.Boolean, nullable=False,
                                     server_default=sa.false()))


def downgrade():
    """Drop the columns again (only for throwaway databases)."""
    with op.batch_alter_table("parks") as batch:
        batch.drop_column("require_after_photo")
    with op.batch_alter_table("hazard_photos") as batch:
        for column in ("height", "width", "thumbnail_name", "tag"):
            batch.drop_column(column)
