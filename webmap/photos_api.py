"""Photo downloads: each route checks access (:func:`geodata.services.photos.photo_access`), sends.

=======  =====================================  =========================================
GET      /api/photos/<id>                       the stored photo (re-encoded, no metadata)
GET      /api/photos/<id>/thumbnail             its thumbnail (JPEG, 320 px long side)
=======  =====================================  =========================================

Both need a user who may read what the photo belongs to (401 without
credentials, 403 ``outside_your_grids`` for a grid member's photo of another
grid).  The answer is ``inline`` with a server-made name (``photo-12.jpg``;
the uploader's name never reaches a header), ``X-Content-Type-Options:
nosniff``, ``Cache-Control: private, no-cache`` (shared caches keep nothing;
the browser revalidates, so access is checked on every view) and an ``ETag``
from the stored file's SHA-256: ``If-None-Match`` gives 304 without the body.
A photo stored before revision 0006 (the upload itself) is cleaned as it is
sent (:func:`geodata.services.photos.photo_content`).
"""

from flask import Blueprint, current_app, request, url_for

from geodata.photos import FORMATS
from geodata.services import photos
from webmap.auth import current_actor
from webmap.db import get_session

bp = Blueprint("photos_api", __name__, url_prefix="/api")

_EXTENSIONS = dict(FORMATS.values())


def photo_json(photo):
    """What the API says about a photo: tag, size, who and when, and its two URLs."""
    return {"id": photo.id, "hazard_id": photo.hazard_id, "visit_id": photo.visit_id,
            "tag": photo.tag,
            "content_type": photo.content_type, "size": photo.size, "sha256": photo.sha256,
            "width": photo.width, "height": photo.height, "original_name": photo.original_name,
            "uploaded_by": photo.uploaded_by, "uploaded_at": photo.uploaded_at.isoformat(),
            "url": url_for("photos_api.photo", photo_id=photo.id),
            "thumbnail_url": url_for("photos_api.thumbnail", photo_id=photo.id)}


def _send(photo_id, thumbnail):
    session = get_session()
    actor = current_actor(session, "read")
    photo = photos.get_photo(session, photo_id)
    photos.photo_access(session, photo, actor)
    # Whole bytes (at most a few MB, capped by MAX_SIDE) rather than a stream: no file
    # handle outlives the request, whatever the client does with the answer.
    data, kind = photos.photo_content(photo, current_app.config["GRIDMAP"].photo_dir,
                                      thumbnail=thumbnail)
    name = f"photo-{photo.id}{'-thumbnail' if thumbnail else ''}{_EXTENSIONS.get(kind, '')}"
    response = current_app.response_class(data, mimetype=kind)
    response.headers["Content-Disposition"] = f"inline; filename={name}"
    # The thumbnail is made from the photo once (or, for an old photo, the same way on
    # every request): the photo's digest identifies it as well.
    variant = ("-thumbnail" if thumbnail else "") + ("-clean" if not photo.thumbnail_name else "")
    response.set_etag(photo.sha256 + variant)
    response.make_conditional(request)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/photos/<int:photo_id>")
def photo(photo_id):
    """The stored photo."""
    return _send(photo_id, thumbnail=False)


@bp.get("/photos/<int:photo_id>/thumbnail")
def thumbnail(photo_id):
    """The photo's thumbnail."""
    return _send(photo_id, thumbnail=True)
