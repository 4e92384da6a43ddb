"""Photos: what is accepted, decided by decoding the bytes, and what is stored.

The file name and ``Content-Type`` a client sends are never trusted: the
type comes from Pillow parsing the image, a PNG's chunks are checked up to
``IEND`` and a JPEG is decoded (at 1/8 scale, which still reads the whole
stream), so a renamed or truncated file is refused before anything is
written.  Size on the wire is capped by ``GRIDMAP_MAX_UPLOAD_MB`` (413), the
pixel count by :data:`MAX_PIXELS` (a decompression bomb is refused from its
header, before it is decoded).

What is stored is never the uploaded file (:func:`prepare`): the image is
turned upright by its EXIF orientation, converted to sRGB, shrunk to at most
:data:`MAX_SIDE` pixels on the long side and re-encoded as a baseline JPEG
(quality :data:`JPEG_QUALITY`), with a :data:`THUMB_SIDE` px thumbnail.  The
new files carry no metadata at all: no EXIF (GPS position, camera make and
serial, capture time), no XMP, no IPTC, no comment and no ICC profile (its
colours are converted to sRGB first, which is what browsers assume for an
untagged JPEG).  A PNG is stored as JPEG too; transparency is flattened on
white.
"""

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from geodata.errors import ValidationError

FORMATS = {"JPEG": ("image/jpeg", ".jpg"), "PNG": ("image/png", ".png")}
MAX_PIXELS = 50_000_000  # a 48 MP phone camera fits; a decompression bomb does not
#: Long side of the stored photo, in pixels: sharp on a desk screen, ~1 MB as JPEG.
MAX_SIDE = 2560
#: Long side of the thumbnail, in pixels (shown at 160 px on 2x screens).
THUMB_SIDE = 320
JPEG_QUALITY = 85
THUMB_QUALITY = 80
_SRGB = ImageCms.createProfile("sRGB")


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
            # Pillow warns about a damaged EXIF block (read for the DPI) and carries on:
            # the block is never stored, so that is no reason to refuse the photo.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(io.BytesIO(data), formats=tuple(FORMATS)) as image:
                # A JPEG with a multi-picture (MPF) segment, as some phones write for
                # depth or motion photos, opens as "MPO": it is a JPEG, and its first
                # picture is the photo.
                kind = "JPEG" if image.format == "MPO" else image.format
                width, height = image.size
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


@dataclass(frozen=True)
class Prepared:
    """A photo ready to store: JPEG bytes of the photo and its thumbnail, and the photo's size."""

    data: bytes
    thumbnail: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"
    extension: str = ".jpg"


def _upright(image):
    """``image`` turned by its EXIF orientation; a damaged EXIF block leaves it as it is."""
    try:
        return ImageOps.exif_transpose(image)
    except (TypeError, ValueError, KeyError, IndexError, SyntaxError, OSError, struct.error):
        return image  # e.g. an orientation stored as a float: keep the pixels as they are


def _to_srgb(image):
    """``image`` as RGB in sRGB colours; its ICC profile, if any, is applied then dropped."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK"):
        try:
            image = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                              _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a damaged profile: keep the numbers as they are (read as sRGB)
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image.convert("RGB")


def _jpeg(image, quality):
    # A fresh image holds pixels only: Pillow's JPEG writer would otherwise copy a
    # comment (COM) or DPI from ``info``; EXIF, XMP and ICC are written only on request.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def prepare(data):
    """Check an uploaded photo and return what is stored of it (:class:`Prepared`).

    The image is decoded (a JPEG larger than :data:`MAX_SIDE` at reduced
    scale, which bounds memory), turned upright by its EXIF orientation,
    converted to sRGB, shrunk to :data:`MAX_SIDE` px and re-encoded without
    any metadata; the thumbnail is at most :data:`THUMB_SIDE` px.

    Raises
    ------
    ValidationError
        As :func:`photo_type`: 415 ``unsupported_photo``, 422 ``invalid_photo``.
    """
    photo_type(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # damaged EXIF, as in photo_type
            with Image.open(io.BytesIO(data), formats=tuple(FORMATS)) as image:
                # draft() picks the smallest JPEG scale still at least this big (a 48 MP
                # photo decodes at half size); both sides, as EXIF may turn it.
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))
                photo = _to_srgb(_upright(image))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ValidationError(f"the photo is damaged or truncated ({str(exc)[:100]})",
                              code="invalid_photo", details={"field": "photo"}) from None
    photo.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    thumb = photo.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return Prepared(_jpeg(photo, JPEG_QUALITY), _jpeg(thumb, THUMB_QUALITY), *photo.size)
