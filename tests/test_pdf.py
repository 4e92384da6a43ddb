"""geodata/pdf.py: Chinese text embedded in reportlab PDFs from Debian's Noto CJK."""

import io
from pathlib import Path

import pypdf
import pytest
from reportlab.pdfgen import canvas

from geodata import pdf
from geodata.errors import ConfigError


def _pdf(lines, bold=False):
    font = pdf.chinese_font(lines, bold=bold)
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    for i, line in enumerate(lines):
        page.setFont(font, 12)
        page.drawString(40, 780 - 20 * i, line)
    page.save()
    return buffer.getvalue()


@pytest.mark.parametrize("bold", [False, True])
def test_chinese_text_is_embedded_and_extractable(bold):
    lines = ["网格长 张喆堃 13800138000", "服务热线：0394-1234567（工作日）"]
    data = _pdf(lines, bold=bold)
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert reader.pages[0].extract_text().splitlines() == lines
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    noto = [f for f in fonts if "NotoSansSC" in f["/BaseFont"]]
    assert noto  # embedded: each subset carries its TrueType glyphs (FontFile2)
    assert all("/FontFile2" in f["/FontDescriptor"].get_object() for f in noto)


def test_documents_with_other_characters_get_their_own_glyphs():
    """reportlab shares fonts of one PostScript name: each cut font must have its own."""
    for lines in (["网格长"], ["测试园区网格"], ["服务热线 喆"]):
        text = pypdf.PdfReader(io.BytesIO(_pdf(lines))).pages[0].extract_text()
        assert text.splitlines() == lines


def test_same_characters_reuse_one_font():
    assert pdf.chinese_font(["公示牌"]) == pdf.chinese_font(["牌示公"])
    assert pdf.chinese_font(["公示牌"]) != pdf.chinese_font(["公示牌"], bold=True)


def test_missing_font_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setitem(pdf.FONT_FILES, "regular", Path(tmp_path / "none.ttc"))
    with pytest.raises(ConfigError, match="fonts-noto-cjk"):
        pdf.chinese_font(["缺字体"])
