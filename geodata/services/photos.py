"""Photos: store one (re-encoded, without metadata, with a thumbnail), find it, decide who sees it.

Every read of a photo goes through :func:`photo_access`, the one place that
says who may see which photo: the download routes, the hazard's photo list
and the desk pages' thumbnails all call it (or :func:`visible_photos`, which
calls it per photo).  A photo is shown to whoever may read what it belongs
to: for a hazard photo, any role that may read the ledger, and a user
limited to some grids only when the hazard lies in one of them.
"""

import hashlib
import secrets
from pathlib import Path

import sqlalchemy as sa

from geodata import domains
from geodata.errors import GridmapError, NotFoundError, ValidationError
from geodata.files import write_on_commit
from geodata.models import Hazard, Photo
from geodata.photos import Prepared, prepare
from geodata.services.ledger import _check_grid_limit
from geodata.vocabulary import PHOTO_TAG_NAMES, PHOTO_TAGS
from geodata.workflow import require

#: The tag of a photo uploaded without one: a hazard is photographed when it is found.
DEFAULT_TAG = "before"
_TAGS = {**{t: t for t in PHOTO_TAGS}, **{v: k for k, v in PHOTO_TAG_NAMES.items()}}


def photo_tag(value):
    """Return the tag ``value`` names (English or 整改前/整改后/走访); None gives the default.

    Raises
    ------
    ValidationError
        422 ``unknown_tag`` naming the field ``tag``.
    """
    if value is None:
        return DEFAULT_TAG
    tag = _TAGS.get(value) if isinstance(value, str) else None
    if tag is None:
        raise ValidationError(f"unknown photo tag {str(value)[:40]!r}; expected one of "
                              f"{', '.join(PHOTO_TAGS)}", code="unknown_tag",
                              details={"field": "tag", "allowed": PHOTO_TAGS})
    return tag


def new_photo(session, data, *, tag, uploaded_by, directory, original_name="", **owner):
    """Add a photo row for ``owner`` (e.g. ``hazard_id=3``) and its files; return the row.

    The caller has checked who may add it.  The tag, the name and the image
    are checked first; the stored photo and its thumbnail are the output of
    :func:`geodata.photos.prepare` (no metadata), written beside their final
    names and moved into place only when the caller commits
    (:func:`geodata.files.write_on_commit`), so a refused upload or a
    rollback leaves no file and no row.  ``size`` and ``sha256`` describe the
    stored file (the download's ETag), not the upload.

    ``data`` is the uploaded bytes, or their :class:`~geodata.photos.Prepared`
    form made before the write transaction began: decoding and re-encoding a
    large photo takes up to a second, and SQLite has a single writer.

    Raises
    ------
    ValidationError
        422 ``unknown_tag``, bad ``filename`` text, 415 ``unsupported_photo``,
        422 ``invalid_photo``.
    """
    tag = photo_tag(tag)
    original_name = domains.text(original_name, "filename", kind="name") or ""
    prepared = data if isinstance(data, Prepared) else prepare(data)
    name = secrets.token_hex(16)
    photo = Photo(stored_name=name + prepared.extension,
                  thumbnail_name=f"{name}.thumb{prepared.extension}",
                  content_type=prepared.content_type, size=len(prepared.data),
                  sha256=hashlib.sha256(prepared.data).hexdigest(), uploaded_by=uploaded_by,
                  original_name=original_name, tag=tag, width=prepared.width,
                  height=prepared.height, **owner)
    session.add(photo)
    session.flush()
    write_on_commit(session, Path(directory) / photo.stored_name, prepared.data)
    write_on_commit(session, Path(directory) / photo.thumbnail_name, prepared.thumbnail)
    return photo


def get_photo(session, photo_id):
    """Return the photo with ``photo_id``.

    Raises
    ------
    NotFoundError
        404 ``photo_not_found``.
    """
    photo = session.get(Photo, photo_id) if domains.is_id(photo_id) else None
    if photo is None:
        raise NotFoundError(f"no photo {photo_id!r}", code="photo_not_found")
    return photo


def _may_see_hazard(session, hazard_id, actor):
    """The hazard, if ``actor`` may see its photos (the ledger's read role and grid limit)."""
    require(actor.role, "read")
    # session.get answers from the identity map: a page of photos costs no query per photo
    hazard = session.get(Hazard, hazard_id) if domains.is_id(hazard_id) else None
    if hazard is None:
        raise NotFoundError(f"no hazard {hazard_id!r}", code="hazard_not_found")
    _check_grid_limit(actor, hazard.grid_id)
    return hazard


def photo_access(session, photo, actor):
    """Raise unless ``actor`` may see ``photo``; the one access rule for photos.

    Raises
    ------
    PermissionDeniedError
        403 ``forbidden`` for a role that may not read, 403
        ``outside_your_grids`` for a hazard or visit outside a grid member's grids.
    """
    if photo.hazard_id is not None:
        _may_see_hazard(session, photo.hazard_id, actor)
        return
    # A visit's photo: the visit's rule (read role, the visit's grid for a grid member).
    from geodata.services.visits import get_visit

    get_visit(session, photo.visit_id, actor)


def visible_photos(session, hazard_ids, actor):
    """The photos of these hazards that ``actor`` may see: ``{hazard_id: [Photo, ...]}``.

    Oldest first; :func:`photo_access` decides for each photo, so a grid
    member gets only those of hazards in their grids.
    """
    ids = sorted({i for i in hazard_ids if i is not None})
    found = {}
    for start in range(0, len(ids), 500):  # bound the IN list
        rows = session.execute(sa.select(Photo).where(Photo.hazard_id.in_(ids[start:start + 500]))
                               .order_by(Photo.id)).scalars().all()
        for photo in rows:
            try:
                photo_access(session, photo, actor)
            except GridmapError:
                continue
            found.setdefault(photo.hazard_id, []).append(photo)
    return found


def hazard_photos(session, hazard_id, actor):
    """A hazard's photos, oldest first, if ``actor`` may see them.

    Raises
    ------
    NotFoundError
        404 ``hazard_not_found``.
    PermissionDeniedError
        As :func:`photo_access` (checked on the hazard, so an empty list is
        refused the same way).
    """
    hazard = _may_see_hazard(session, hazard_id, actor)
    return session.execute(sa.select(Photo).where(Photo.hazard_id == hazard.id)
                           .order_by(Photo.id)).scalars().all()


def photo_content(photo, directory, *, thumbnail=False):
    """The bytes to send for a photo (or its thumbnail) and their content type.

    A photo stored before revision 0006 is the uploaded file itself, EXIF
    and all, with no thumbnail: it is cleaned on the way out
    (:func:`geodata.photos.prepare`), so no stored file is ever sent with
    its metadata.

    Raises
    ------
    NotFoundError
        404 ``photo_file_missing`` when the file is not on disk.
    """
    legacy = photo.thumbnail_name is None
    name = photo.thumbnail_name if thumbnail and not legacy else photo.stored_name
    path = Path(directory) / name
    if not path.is_file():
        raise NotFoundError(f"the file of photo {photo.id} is missing",
                            code="photo_file_missing")
    if legacy:
        prepared = prepare(path.read_bytes())
        return (prepared.thumbnail if thumbnail else prepared.data), prepared.content_type
    return path.read_bytes(), "image/jpeg" if thumbnail else photo.content_type
