"""Hazard photos on both backends: the stored file has no metadata and stands upright, the
thumbnail exists, the download routes check role and grid, and a park may require an
after-photo before a major hazard is closed."""

import io
import re

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image, ImageCms

from geodata.cli import main
from geodata.models import Park, Photo
from geodata.photos import MAX_SIDE, THUMB_SIDE
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.ledger_helpers import image_bytes, ledger_state, lonlat
from tests import test_hazards_api

api = test_hazards_api.api  # the fixture: park T, a token per role, the app

RED, BLUE = (255, 0, 0), (0, 0, 255)
GPS = {1: "N", 2: (31.0, 12.0, 30.0), 3: "E", 4: (121.0, 28.0, 1.0)}


def phone_jpeg(size=(400, 200), orientation=6):
    """A JPEG as a phone writes it: sideways pixels plus EXIF orientation, GPS, camera, ICC.

    The pixels are blue with a red block in their top-left corner; orientation
    6 means "turn 90° clockwise to view", which puts the block top-right.
    """
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 8, size[1] // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110], exif[0xA431] = "PhoneMaker", "Model X", "SN-123456"
    exif[0x8825] = GPS
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, icc_profile=icc, comment=b"secret comment",
               quality=95)
    return buffer.getvalue()


def jpeg_markers(data):
    """The marker bytes of a JPEG's header segments, up to the image data (SOS)."""
    markers, i = [], 2
    while i < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:
            break
        markers.append(marker)
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return markers


def app_segments(data):
    """The APPn (EXIF, XMP, ICC, IPTC...) and COM segments of a JPEG: only JFIF's APP0 is left."""
    return [m for m in jpeg_markers(data) if 0xE0 <= m <= 0xEF or m == 0xFE]


def form(photo, tag=None, filename="IMG_0001.jpg"):
    """A multipart body with ``photo`` and, if given, ``tag``."""
    parts = b""
    if tag is not None:
        parts += (f'--b0undary\r\nContent-Disposition: form-data; name="tag"\r\n\r\n{tag}\r\n'
                  ).encode()
    parts += (f'--b0undary\r\nContent-Disposition: form-data; name="photo"; '
              f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    return {"data": parts + photo + b"\r\n--b0undary--\r\n",
            "content_type": "multipart/form-data; boundary=b0undary"}


def stored(tmp_path):
    folder = tmp_path / "data" / "photos"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch(api, url, role="viewer", **kwargs):
    """GET ``url``; the body is read and the file the response streams from is closed."""
    response = api.call("GET", url, role, **kwargs)
    response.get_data()
    response.close()
    return response


def upload(api, hid, data=None, tag=None, role="inspector"):
    return api.call("POST", f"/api/hazards/{hid}/photos", role,
                    **form(phone_jpeg() if data is None else data, tag))


def test_stored_photo_is_upright_without_metadata_and_has_a_thumbnail(api, engine, tmp_path):
    hid = api.create().json["id"]
    response = upload(api, hid, tag="after")
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["tag"], body["width"], body["height"]) == ("after", 200, 400)
    assert body["content_type"] == "image/jpeg" and body["original_name"] == "IMG_0001.jpg"
    assert body["url"] == f"/api/photos/{body['id']}" and response.headers["Location"].endswith(
        body["url"])
    with session_scope(engine) as session:
        row = session.get(Photo, body["id"])
        names = (row.stored_name, row.thumbnail_name, row.size, row.tag)
    folder = tmp_path / "data" / "photos"
    assert stored(tmp_path) == sorted(names[:2])
    data = (folder / names[0]).read_bytes()
    assert len(data) == names[2] == body["size"]
    # no EXIF (GPS, camera, serial), XMP, ICC, comment: only the JFIF header segment
    assert app_segments(data) == [0xE0]
    for secret in (b"Exif", b"PhoneMaker", b"SN-123456", b"secret comment", b"ICC_PROFILE",
                   b"http://ns.adobe.com/xap"):
        assert secret not in data
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (200, 400)  # turned upright
        assert not image.getexif() and "icc_profile" not in image.info
        image = image.convert("RGB")
        # the red block is now top-right, blue elsewhere
        assert _near(image.getpixel((image.width - 10, 10)), RED)
        assert _near(image.getpixel((10, 10)), BLUE)
        assert _near(image.getpixel((image.width - 10, image.height - 10)), BLUE)
    thumb = (folder / names[1]).read_bytes()
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "JPEG" and max(image.size) <= THUMB_SIDE
        assert image.size == (160, 320) and not image.getexif()
        assert _near(image.convert("RGB").getpixel((image.width - 5, 5)), RED)
    assert len(thumb) < len(data) and app_segments(thumb) == [0xE0]


def _near(got, want, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(got, want))


@pytest.mark.parametrize("size, orientation, expected", [
    ((6000, 1500), 1, (MAX_SIDE, 640)),          # shrunk to the cap, decoded at reduced scale
    ((1500, 6000), 8, (MAX_SIDE, 640)),          # turned, then shrunk
    ((300, 100), 3, (300, 100)),                 # upside down: same size, never enlarged
])
def test_large_photos_are_capped_and_every_orientation_applied(api, size, orientation,
                                                               expected):
    hid = api.create().json["id"]
    response = upload(api, hid, phone_jpeg(size, orientation))
    assert response.status_code == 201, response.json
    assert (response.json["width"], response.json["height"]) == expected
    got = fetch(api, response.json["url"])
    with Image.open(io.BytesIO(got.data)) as image:
        assert image.size == expected


def test_png_with_transparency_is_stored_as_jpeg_on_white(api):
    hid = api.create().json["id"]
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    response = upload(api, hid, buffer.getvalue(), tag="整改前")
    assert response.status_code == 201, response.json
    assert (response.json["content_type"], response.json["tag"]) == ("image/jpeg", "before")
    got = fetch(api, response.json["url"])
    with Image.open(io.BytesIO(got.data)) as stored_image:
        rgb = stored_image.convert("RGB")
        assert _near(rgb.getpixel((35, 15)), (255, 255, 255)) and _near(
            rgb.getpixel((5, 15)), (0, 128, 0))


@pytest.mark.parametrize("tag, code", [
    ("during", "unknown_tag"), ("", "unknown_tag"), ("AFTER", "unknown_tag"),
    ("<script>", "unknown_tag")])
def test_unknown_tag_is_refused_and_stores_nothing(api, engine, tmp_path, tag, code):
    hid = api.create().json["id"]
    before = table_counts(engine)
    response = upload(api, hid, tag=tag)
    assert response.status_code == 422 and response.json["error"]["code"] == code
    assert response.json["error"]["details"]["field"] == "tag"
    assert stored(tmp_path) == [] and table_counts(engine) == before


def test_upload_without_tag_is_a_before_photo(api):
    hid = api.create().json["id"]
    assert upload(api, hid).json["tag"] == "before"


def test_download_routes_headers_etag_and_304(api):
    hid = api.create().json["id"]
    photo = upload(api, hid).json
    for url, name in ((photo["url"], f"photo-{photo['id']}.jpg"),
                      (photo["thumbnail_url"], f"photo-{photo['id']}-thumbnail.jpg")):
        got = fetch(api, url)
        assert got.status_code == 200 and got.mimetype == "image/jpeg"
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["Content-Disposition"] == f"inline; filename={name}"
        assert "private" in got.headers["Cache-Control"]
        etag = got.headers["ETag"]
        assert photo["sha256"] in etag
        again = fetch(api, url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.data == b""
        changed = fetch(api, url, headers={"If-None-Match": '"other"'})
        assert changed.status_code == 200 and changed.data == got.data
    full = fetch(api, photo["url"]).data
    assert len(full) == photo["size"]


def test_listing_a_hazards_photos(api):
    hid = api.create().json["id"]
    first = upload(api, hid, tag="before").json
    second = upload(api, hid, tag="after").json
    listed = fetch(api, f"/api/hazards/{hid}/photos")
    assert listed.status_code == 200
    items = listed.json["photos"]
    assert [p["id"] for p in items] == [first["id"], second["id"]]
    assert [p["tag"] for p in items] == ["before", "after"]
    assert set(items[0]) >= {"id", "tag", "size", "width", "height", "uploaded_by",
                             "uploaded_at", "url", "thumbnail_url"}
    assert items[0]["uploaded_by"] == "inspector"
    assert fetch(api, "/api/hazards/999999/photos").status_code == 404


def test_access_follows_the_hazard_role_and_grid(api, engine):
    own = api.create("T-003").json["id"]       # the member's grid
    other = api.create("T-001").json["id"]
    mine = upload(api, own).json
    theirs = upload(api, other).json
    for url in (theirs["url"], theirs["thumbnail_url"], f"/api/hazards/{other}/photos"):
        refused = api.call("GET", url, "member")
        assert refused.status_code == 403, url
        assert refused.json["error"]["code"] == "outside_your_grids"
        anonymous = api.call("GET", url, None)
        assert anonymous.status_code == 401 and anonymous.json["error"]["code"] == (
            "authentication_required")
    for url in (mine["url"], mine["thumbnail_url"], f"/api/hazards/{own}/photos"):
        assert fetch(api, url, "member").status_code == 200, url
    for role in ("viewer", "planner", "supervisor", "admin"):
        assert fetch(api, theirs["url"], role).status_code == 200, role
    missing = fetch(api, "/api/photos/999999")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "photo_not_found"
    assert fetch(api, f"/api/photos/{2**70}/thumbnail").status_code == 404


def test_photo_of_a_visit_follows_the_visits_grid(api):
    # Merge of h/visits and h/photos: a visit's photo gets the visit's rule.
    lon, lat = lonlat("T-004")
    visit = api.call("POST", "/api/parks/T/visits", "inspector", {
        "client_id": "6f1c2d9e-0b7a-4c1e-9f3a-2d4b5c6e7f80", "kind": "patrol",
        "occurred_at": "2026-11-20T09:30:00+08:00", "lon": lon, "lat": lat})
    assert visit.status_code == 201, visit.json
    sent = api.call("POST", f"/api/visits/{visit.json['id']}/photos", "inspector",
                    **form(image_bytes("JPEG")))
    assert sent.status_code == 201, sent.json
    assert sent.json["tag"] == "visit"
    assert fetch(api, sent.json["url"], "viewer").status_code == 200
    refused = fetch(api, sent.json["thumbnail_url"], "member")  # serves T-003 only
    assert refused.status_code == 403 and refused.json["error"]["code"] == "outside_your_grids"


def test_photo_stored_before_0006_is_cleaned_as_it_is_sent(api, engine, tmp_path):
    # Before revision 0006 the upload itself was stored, EXIF and GPS included, with no
    # thumbnail: the routes send it re-encoded, never as stored.
    hid = api.create().json["id"]
    photo = upload(api, hid).json
    raw = phone_jpeg()
    with session_scope(engine, write=True) as session:
        row = session.get(Photo, photo["id"])
        folder = tmp_path / "data" / "photos"
        (folder / row.thumbnail_name).unlink()
        (folder / row.stored_name).write_bytes(raw)
        row.thumbnail_name = row.width = row.height = None
        stored_name = row.stored_name
    listed = fetch(api, f"/api/hazards/{hid}/photos").json["photos"]
    assert listed[0]["thumbnail_url"] == photo["thumbnail_url"]
    for url, size in ((photo["url"], (200, 400)), (photo["thumbnail_url"], (160, 320))):
        got = fetch(api, url)
        assert got.status_code == 200 and got.mimetype == "image/jpeg"
        assert app_segments(got.data) == [0xE0] and b"PhoneMaker" not in got.data
        with Image.open(io.BytesIO(got.data)) as image:
            assert image.size == size
        again = fetch(api, url, headers={"If-None-Match": got.headers["ETag"]})
        assert again.status_code == 304
    (folder / stored_name).unlink()
    for url in (photo["url"], photo["thumbnail_url"]):
        got = fetch(api, url)
        assert got.status_code == 404 and got.json["error"]["code"] == "photo_file_missing"


def _park_setting(engine):
    with session_scope(engine) as session:
        return session.execute(sa.select(Park.require_after_photo)).scalar_one()


def test_parks_set_require_after_photo(api, engine, db_url):
    run = CliRunner()
    assert _park_setting(engine) is False
    result = run.invoke(main, ["--db", db_url, "parks", "set", "t", "--require-after-photo"])
    assert result.exit_code == 0, result.output
    assert "T: require_after_photo=yes" in result.output and _park_setting(engine) is True
    before = table_counts(engine)
    for args, message in ((["parks", "set", "NOPE", "--no-require-after-photo"], "NOPE"),
                          (["parks", "set", "T"], "--require-after-photo")):
        refused = run.invoke(main, ["--db", db_url, *args])
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert _park_setting(engine) is True and table_counts(engine) == before
    result = run.invoke(main, ["--db", db_url, "parks", "set", "T", "--no-require-after-photo"])
    assert result.exit_code == 0 and _park_setting(engine) is False


def test_major_hazard_needs_an_after_photo_to_close_when_the_park_says_so(api, engine,
                                                                          db_url):
    CliRunner().invoke(main, ["--db", db_url, "parks", "set", "T", "--require-after-photo"])
    major = api.create(level="major").json["id"]
    general = api.create().json["id"]
    for hid in (major, general):
        assert api.move(hid, "supervising", 1).status_code == 200
    assert upload(api, major, tag="before").status_code == 201
    close = {"supervision": {"note": "复核合格"}}
    state, counts = ledger_state(engine), table_counts(engine)
    refused = api.move(major, "closed", 2, "supervisor", **close)
    assert refused.status_code == 422
    error = refused.json["error"]
    assert error["code"] == "after_photo_required" and "after" in error["message"]
    assert error["details"]["rule"] == "parks.require_after_photo"
    assert ledger_state(engine) == state and table_counts(engine) == counts
    # a general hazard is not concerned
    assert api.move(general, "closed", 2, "supervisor", **close).status_code == 200
    assert upload(api, major, tag="after").status_code == 201
    closed = api.move(major, "closed", 2, "supervisor", **close)
    assert closed.status_code == 200, closed.json


def test_major_hazard_closes_without_photo_when_the_park_does_not_require_one(api):
    major = api.create(level="major").json["id"]
    assert api.move(major, "supervising", 1).status_code == 200
    assert api.move(major, "closed", 2, "supervisor",
                    supervision={"note": "ok"}).status_code == 200


def test_refused_upload_of_a_good_photo_leaves_nothing(api, engine, tmp_path):
    other = api.create("T-001").json["id"]
    before = table_counts(engine)
    for role, code in (("member", "outside_your_grids"), ("viewer", "forbidden")):
        response = upload(api, other, role=role, tag="after")
        assert response.json["error"]["code"] == code
    response = upload(api, other, image_bytes()[:-5] + b"XXXXX", tag="after")
    assert (response.status_code, response.json["error"]["code"]) == (422, "invalid_photo")
    assert stored(tmp_path) == [] and table_counts(engine) == before


def test_ledger_and_grid_pages_show_the_thumbnails_the_user_may_see(api):
    own = api.create("T-003", description="<img src=x onerror=alert(1)>").json
    other = api.create("T-001").json
    mine, theirs = upload(api, own["id"], tag="after").json, upload(api, other["id"]).json

    def thumbs(url, role):
        page = api.call("GET", url, role)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        return {int(i) for i in re.findall(r'<img src="/api/photos/(\d+)/thumbnail"', html)}, html

    shown, html = thumbs("/parks/T/ledger", "viewer")
    assert shown == {mine["id"], theirs["id"]}
    assert f'href="/api/photos/{mine["id"]}"' in html and "整改后 after 1" in html
    assert thumbs("/parks/T/ledger", "member")[0] == {mine["id"]}
    assert thumbs("/parks/T/grids/T-003", "member")[0] == {mine["id"]}
    assert thumbs("/parks/T/grids/T-001", "member")[0] == set()
    assert thumbs("/parks/T/grids/T-001", "viewer")[0] == {theirs["id"]}
    assert thumbs("/parks/T/grids/T-003", None)[0] == set()  # anonymous: no photos


def test_multi_picture_jpeg_is_a_jpeg(api):
    # Phones write depth and motion photos with an MPF segment; Pillow calls them MPO
    # (this was a KeyError, a 500, before).
    first, second = Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE)
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    hid = api.create().json["id"]
    response = upload(api, hid, buffer.getvalue())
    assert response.status_code == 201, response.json
    with Image.open(io.BytesIO(fetch(api, response.json["url"]).data)) as image:
        assert image.format == "JPEG" and _near(image.convert("RGB").getpixel((5, 5)), RED)


def test_damaged_exif_never_breaks_an_upload():
    # Seeded byte changes in the EXIF block: each photo is stored (unturned, if the
    # orientation is unreadable) or refused with a 4xx, never an exception; Pillow's
    # "Corrupt EXIF" warnings are errors under this suite, so they are checked too.
    from random import Random

    from geodata.errors import GridmapError
    from geodata.photos import prepare

    data = phone_jpeg((64, 48))
    start, rng, stored_ = data.index(b"Exif"), Random(1), 0
    for _ in range(400):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            damaged[start + rng.randrange(6, 200)] = rng.randrange(256)
        try:
            prepared = prepare(bytes(damaged))
        except GridmapError as exc:
            assert exc.http_status in (415, 422)
            continue
        stored_ += 1
        assert app_segments(prepared.data) == [0xE0]
    assert stored_ > 200


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-key"])
def test_an_upload_cut_off_at_any_write_leaves_no_file_and_no_row(api, engine, tmp_path, keyed):
    """The database fails at the 1st, 2nd, ... write statement of an upload: 503, and neither
    a row nor a file (photo, thumbnail or temporary) is left; then the upload goes through."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from tests.test_write_faults import _Fault

    hid = api.create("T-001").json["id"]
    before = table_counts(engine)
    headers = {"Idempotency-Key": "photo-fault-1"} if keyed else {}
    at = 1
    while True:
        fault = _Fault(sa.exc.OperationalError("INSERT", {}, Exception("connection lost")), at)
        event.listen(Engine, "before_cursor_execute", fault)
        try:
            response = api.call("POST", f"/api/hazards/{hid}/photos", "inspector",
                                headers=headers, **form(phone_jpeg(), "before"))
        finally:
            event.remove(Engine, "before_cursor_execute", fault)
        if fault.seen < at:  # fewer writes than that: this one went through
            break
        assert response.status_code == 503, (at, response.json)
        assert stored(tmp_path) == [] and table_counts(engine) == before, at
        at += 1
    assert response.status_code == 201 and at > (2 if keyed else 1), response.json
    assert len(stored(tmp_path)) == 2  # the photo and its thumbnail, nothing else
