"""Benchmark ``gridmap boards``: 400 boards of one park, beside the naive way.

The park is a generated province park (``geodata/province.py``) of
``--grids`` grids, each with a chief, loaded into a throwaway SpatiaLite
file.  Both ways write the same A4 boards with the same text and QR codes;
only the map differs in how it is made:

* **gridmap**: the park is rendered once by matplotlib; every page shows
  that one image (one form XObject in the PDF) and draws its grid over it
  as a vector path.
* **naive**: what one would write first, one matplotlib figure per grid
  (park, every grid line, the grid highlighted), saved as a PNG and
  embedded in its page.

Usage::

    python scripts/bench_boards.py [--grids 400] [--repeat 1]
"""

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodata import boards, schema  # noqa: E402
from geodata.services.boards import board_set  # noqa: E402
from geodata.services.demo_loader import load_province  # noqa: E402
from geodata.services.parks import get_park  # noqa: E402
from geodata.storage import make_engine, session_scope  # noqa: E402

BASE = "https://gridmap.example.cn"
LINE = "0394-5211234"


def naive_render(chosen, out):
    """The same boards, with one matplotlib figure per grid (the baseline)."""
    import geopandas as gpd
    import shapely
    from matplotlib.figure import Figure
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    from geodata.pdf import chinese_font

    texts = boards.document_texts(chosen)
    fonts = {"regular": chinese_font(texts), "bold": chinese_font(texts, bold=True)}
    layout = boards.ParkMap.__new__(boards.ParkMap)  # frame only; no shared image
    minx, miny, maxx, maxy = chosen.boundary.bounds
    pad = 0.04 * max(maxx - minx, maxy - miny)
    layout.extent = (minx - pad, miny - pad, maxx + pad, maxy + pad)
    layout.scale = min(boards.MAP_BOX[0] / (layout.extent[2] - layout.extent[0]),
                       boards.MAP_BOX[1] / (layout.extent[3] - layout.extent[1]))
    layout.size = ((layout.extent[2] - layout.extent[0]) * layout.scale,
                   (layout.extent[3] - layout.extent[1]) * layout.scale)
    pdf = canvas.Canvas(out, pagesize=boards.PAGE, pageCompression=1)
    for number, board in enumerate(chosen.boards, 1):
        figure = Figure(figsize=(layout.size[0] / 72, layout.size[1] / 72), dpi=boards.MAP_DPI)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_axis_off()
        gpd.GeoSeries([chosen.boundary]).plot(ax=axes, color="#e8eef7", edgecolor="#1f3a93",
                                              linewidth=1.2)
        lines = gpd.GeoSeries(shapely.boundary(chosen.cells))
        lines.plot(ax=axes, color="#8a9bb8", linewidth=0.4)
        gpd.GeoSeries([board.geometry]).plot(ax=axes, color="#dc2626", alpha=0.45,
                                             edgecolor="#dc2626")
        axes.set_xlim(layout.extent[0], layout.extent[2])
        axes.set_ylim(layout.extent[1], layout.extent[3])
        axes.set_aspect("equal")
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=boards.MAP_DPI)
        png.seek(0)
        image = ImageReader(png)
        boards._page(pdf, fonts, chosen, board, layout, number, len(chosen.boards),
                     lambda pdf, origin: pdf.drawImage(image, *origin, *layout.size))
        pdf.showPage()
    pdf.save()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        engine = make_engine(url, create=True)
        schema.upgrade(engine)
        load_province(engine, 1, args.grids)
        with session_scope(engine) as session:
            started = time.perf_counter()
            chosen = board_set(session, get_park(session, "PV001"), base_url=BASE,
                               service_line=LINE)
            read_s = time.perf_counter() - started
        engine.dispose()
        boards.render(chosen, str(Path(tmp) / "warm.pdf"))  # fonts cut, imports done
        results = {}
        for name, render in (("gridmap (park drawn once)", boards.render),
                             ("naive (one figure per grid)", naive_render)):
            times = []
            for i in range(args.repeat):
                out = Path(tmp) / f"{name[:5]}{i}.pdf"
                started = time.perf_counter()
                render(chosen, str(out))
                times.append(time.perf_counter() - started)
            results[name] = (statistics.median(times), out.stat().st_size)
    n = len(chosen.boards)
    print(f"{n} boards of park PV001 ({args.grids} grids); reading the data: {read_s:.2f} s")
    print(f"{'way':30} {'total s':>8} {'ms/board':>9} {'PDF MB':>7}")
    for name, (seconds, size) in results.items():
        print(f"{name:30} {seconds:8.2f} {1000 * seconds / n:9.1f} {size / 2**20:7.1f}")
    fast, slow = (v[0] for v in results.values())
    print(f"speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
