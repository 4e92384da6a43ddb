"""gridmap boards: one PDF page per grid with published staff, service line and QR code.

The PDF is read back the way a person would check it: its text extracted
with pypdf, each page rendered with PDFium and its QR code decoded with
zxing-cpp, on both backends.
"""

import io

import geopandas as gpd
import pandas as pd
import pypdf
import pypdfium2
import pytest
import sqlalchemy as sa
import zxingcpp

from geodata import boards
from geodata.errors import GridmapError
from geodata.models import Grid
from geodata.services.grids import import_grids
from geodata.services.parks import get_park
from geodata.services.staff import import_staff
from geodata.storage import session_scope
from tests.conftest import metric_box, stored_snapshot
from tests.ledger_helpers import build_park

BASE = "https://gridmap.example.cn/zone"
LINE = "0394-5211234"
#: (grid, name, phone, role, published)
STAFF = [("T-001", "李喆堃", "13700000011", "full_time", True),
         ("T-001", "赵秘密", "13700000012", "part_time", False),
         ("T-003", "孙三", "13700000031", "grid_chief", True),
         ("T-001-01", "周车间", "13700000101", "grid_chief", True)]
PUBLISHED = {"T-001": ["王一", "李喆堃"], "T-002": [], "T-003": ["孙三"], "T-004": [],
             "T-001-01": ["周车间"]}
HIDDEN = ["王二", "13900000002", "赵秘密", "13700000012"]


def make_park(engine):
    build_park(engine, users=False)  # T-001 chief 王一 published, T-002 chief 王二 not
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_grids(session, park, gpd.GeoDataFrame(
            [{"code": "T-001-01", "name": "一号车间", "parent_code": "T-001"}],
            geometry=[metric_box(0, 500, 250, 750)], crs=4326))
        import_staff(session, park, pd.DataFrame(
            [dict(zip(("grid_code", "name", "phone", "role", "published"), s)) for s in STAFF]))


def pages_of(path):
    """(text, decoded QR payloads) of every page."""
    data = path.read_bytes()
    reader = pypdf.PdfReader(io.BytesIO(data))
    document = pypdfium2.PdfDocument(data)
    try:
        return [(page.extract_text(),
                 [r.text for r in zxingcpp.read_barcodes(document[i].render(scale=2).to_pil())])
                for i, page in enumerate(reader.pages)]
    finally:
        document.close()


def test_one_page_per_grid_with_published_staff_and_a_qr_code(runner, engine, tmp_path):
    make_park(engine)
    out = tmp_path / "boards.pdf"
    result = runner("boards", "--park", "T", "--out", out, "--service-line", LINE,
                    "--base-url", BASE + "/")
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        grids = dict(session.execute(sa.select(Grid.code, Grid.name).where(
            Grid.active_to.is_(None)).order_by(Grid.code)).all())
    pages = pages_of(out)
    assert len(pages) == len(grids) == 5
    for (code, name), (text, codes) in zip(grids.items(), pages):
        assert code in text and name in text and "测试园区" in text and LINE in text
        for person in PUBLISHED[code]:
            assert person in text
        for grid_code, person, phone, _, published in STAFF:
            if grid_code == code and published:
                assert phone in text
        for secret in HIDDEN:
            assert secret not in text
        if not PUBLISHED[code]:
            assert "暂无公示的网格员" in text
        assert codes == [f"{BASE}/parks/T/grids/{code}"]
    assert "13900000001" in pages[0][0]  # 王一's phone, beside the name


def test_one_grid_and_the_base_url_from_the_environment(runner, engine, tmp_path,
                                                        monkeypatch):
    make_park(engine)
    monkeypatch.setenv("GRIDMAP_PUBLIC_URL", "http://10.0.0.5:8080")
    out = tmp_path / "one.pdf"
    result = runner("boards", "--park", "T", "--grid", "t-003", "--out", out,
                    "--service-line", LINE)
    assert result.exit_code == 0, result.output
    ((text, codes),) = pages_of(out)
    assert "T-003" in text and "孙三" in text and "13700000031" in text
    assert codes == ["http://10.0.0.5:8080/parks/T/grids/T-003"]


@pytest.mark.parametrize("args, message", [
    (["--park", "NOPE"], "no park with code 'NOPE'"),
    (["--park", "T", "--grid", "T-999"], "no grid 'T-999' in park T"),
    (["--park", "T", "--out", "{missing}/x.pdf"], "does not exist"),
    (["--park", "T", "--out", "{tmp}"], "is a directory"),
    (["--park", "T", "--base-url", "ftp://x.cn"], "must be an http:// or https:// address"),
    (["--park", "T", "--base-url", "https://u:p@x.cn"], "must not hold a user"),
    (["--park", "T", "--base-url", ""], "give --base-url or set GRIDMAP_PUBLIC_URL"),
    (["--park", "T", "--service-line", "0394\n123"], "service_line"),
    (["--park", "T", "--service-line", "9" * 40], "service_line"),
])
def test_bad_input_exits_2_naming_it_and_writes_nothing(runner, engine, tmp_path, args,
                                                        message):
    make_park(engine)
    before = stored_snapshot(engine)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "boards.pdf"
    defaults = {"--out": str(out), "--service-line": LINE, "--base-url": BASE}
    args = [a.format(missing=tmp_path / "missing", tmp=folder) for a in args]
    for option, value in defaults.items():
        if option not in args:
            args += [option, value]
    result = runner("boards", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert list(folder.iterdir()) == []  # no PDF, no temporary file
    assert stored_snapshot(engine) == before


def test_a_failure_while_drawing_leaves_no_half_file(runner, engine, tmp_path, monkeypatch):
    make_park(engine)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "boards.pdf"
    out.write_bytes(b"the old boards")

    def broken(board_set, target):
        with open(target, "wb") as f:
            f.write(b"%PDF-1.4 half")
        raise GridmapError("drawing failed")

    monkeypatch.setattr(boards, "render", broken)
    result = runner("boards", "--park", "T", "--out", out, "--service-line", LINE,
                    "--base-url", BASE)
    assert result.exit_code == 2 and "drawing failed" in result.stderr
    assert out.read_bytes() == b"the old boards"
    assert [p.name for p in out.parent.iterdir()] == ["boards.pdf"]


def test_the_park_is_drawn_once_and_shared_by_every_page(runner, engine, tmp_path):
    make_park(engine)
    out = tmp_path / "boards.pdf"
    assert runner("boards", "--park", "T", "--out", out, "--service-line", LINE,
                  "--base-url", BASE).exit_code == 0
    reader = pypdf.PdfReader(out)
    images = {ref.idnum for page in reader.pages
              for ref in page["/Resources"]["/XObject"].values()}
    assert len(reader.pages) == 5 and len(images) == 1


def test_the_qr_page_shows_a_visitor_only_the_published_staff(db_url, engine):
    """The board's QR code opens the grid page on any phone: anonymous, it shows the board."""
    from webmap import create_app

    make_park(engine)
    with session_scope(engine, write=True) as session:
        from geodata.services.users import add_user, create_token

        add_user(session, "viewer", "viewer-pass-123", "viewer")
        token, _ = create_token(session, "viewer", "tests")
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    try:
        client = app.test_client()
        # Every public view that lists staff: the page, the map's popups and layers.
        for url in ("/parks/T/grids/T-001", "/api/parks/T/summaries",
                    "/api/parks/T/summaries/T-001", "/api/parks/T/grids",
                    "/api/parks/T/grids/T-001"):
            response = client.get(url)
            assert response.status_code == 200, url
            visitor = response.get_data(as_text=True)
            assert "王一" in visitor and "李喆堃" in visitor and "13700000011" in visitor, url
            assert "赵秘密" not in visitor and "13700000012" not in visitor, url
            viewer = client.get(url, headers={
                "Authorization": f"Bearer {token}"}).get_data(as_text=True)
            assert "赵秘密" in viewer and "13700000012" in viewer, url  # staff see colleagues
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_the_demo_parks_boards_keep_their_chinese_text(runner, engine, tmp_path):
    """Done-when of issue 12: the demo park's PDF opens with its Chinese text intact."""
    from geodata.models import GridStaff

    assert runner("demo").exit_code == 0
    out = tmp_path / "demo-boards.pdf"
    result = runner("boards", "--park", "FGKFQ", "--out", out, "--service-line", LINE,
                    "--base-url", BASE)
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        grids = session.execute(sa.select(Grid.code, Grid.name).where(
            Grid.active_to.is_(None)).order_by(Grid.code)).all()
        staff = session.execute(sa.select(Grid.code, GridStaff.name, GridStaff.phone).join(
            Grid, GridStaff.grid_id == Grid.id).where(GridStaff.published.is_(True))).all()
    reader = pypdf.PdfReader(out)
    assert len(reader.pages) == len(grids) == 85
    texts = {code: page.extract_text() for (code, _), page in zip(grids, reader.pages)}
    for code, name in grids:
        assert code in texts[code] and name in texts[code] and "扶沟县先进制造业开发区" in texts[code]
    for code, name, phone in staff:
        assert name in texts[code] and phone in texts[code], (code, name)
    assert "\x00" not in "".join(texts.values()) and "\ufffd" not in "".join(texts.values())
