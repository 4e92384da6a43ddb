"""Hazard photos: what is accepted, decided by decoding the bytes.

The file name and ``Content-Type`` a client sends are never trusted: the
type comes from Pillow parsing the image, a PNG's chunks are checked up to
``IEND`` and a JPEG is decoded (at 1/8 scale, which still reads the whole
stream), so a renamed or truncated file is refused before anything is
written.  Size on the wire is capped by ``GRIDMAP_MAX_UPLOAD_MB`` (413).
"""

import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from geodata.errors import ValidationError

FORMATS = {"JPEG": ("image/jpeg", ".jpg"), "PNG": ("image/png", ".png")}
MAX_PIXELS = 50_000_000  # a 48 MP phone camera fits; a decompression bomb does not


def photo_type(data):
    """Return ``(content_type, extension)`` of a JPEG or PNG photo.

    Raises
    ------
    ValidationError
        415 ``unsupported_photo`` for anything that is not a JPEG or PNG;
        422 ``invalid_photo`` for a damaged or truncated one, or one over
        :data:`MAX_PIXELS`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(FORMATS)) as image:
                kind, (width, height) = image.format, image.size
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{width} x {height}")
                image.verify()
            if kind == "JPEG":
                with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
                    image.draft("L", (max(1, width // 8), max(1, height // 8)))
                    image.load()
    except UnidentifiedImageError:
        raise ValidationError("photos must be JPEG or PNG", code="unsupported_photo",
                              http_status=415, details={"field": "photo"}) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError(f"the photo has more than {MAX_PIXELS // 1_000_000} million "
                              "pixels", code="invalid_photo",
                              details={"field": "photo", "max_pixels": MAX_PIXELS}) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ValidationError(f"the photo is damaged or truncated ({str(exc)[:100]})",
                              code="invalid_photo", details={"field": "photo"}) from None
    return FORMATS[kind]
