"""Chinese text in PDFs made with reportlab: Noto Sans CJK SC from Debian's fonts-noto-cjk.

reportlab embeds TrueType fonts only, and Debian's Noto CJK files are
OpenType collections with PostScript (CFF) outlines, which reportlab refuses
("postscript outlines are not supported").  So :func:`chinese_font` cuts the
glyphs a document needs out of the collection with fontTools, converts their
cubic outlines to TrueType quadratics (``cu2qu``, within 1 font unit) and
registers that small TrueType font with reportlab, which embeds (a subset of)
it in every PDF that uses it: the PDF shows the same text on any machine and
its text can be extracted (reportlab writes a ``ToUnicode`` map).

Cutting and converting a few hundred glyphs takes ~0.2 s; each character set
is converted once per process.  Usage::

    from geodata.pdf import chinese_font
    font = chinese_font(all_texts_of_the_document)     # a reportlab font name
    canvas.setFont(font, 12)

Pass every string the document will draw (names, headers, numbers): a
character left out is drawn as an empty box.  Printable ASCII is always in.
"""

import hashlib
import io
import threading
from pathlib import Path

from geodata.errors import ConfigError

#: The Debian package the fonts come from (scripts/install.sh installs it).
FONT_PACKAGE = "fonts-noto-cjk"
#: Where fonts-noto-cjk puts the collections, by weight.
FONT_FILES = {
    "regular": Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    "bold": Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
}
#: The face of the collection used: Simplified Chinese glyph shapes.
FACE = "Noto Sans CJK SC"
#: Always in the font, so numbers, codes, phones and URLs never need listing.
ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "·—–…（）：，。、；“”‘’《》【】"

_lock = threading.Lock()
_registered = {}


def font_file(weight="regular"):
    """The collection file of ``weight``; :class:`ConfigError` naming the package if absent."""
    path = FONT_FILES[weight]
    if not path.is_file():
        raise ConfigError(f"the Chinese font {path} is missing: install the Debian package "
                          f"{FONT_PACKAGE} (scripts/install.sh does)",
                          details={"setting": FONT_PACKAGE, "file": str(path)})
    return path


def chinese_font(texts, *, bold=False):
    """Register a TrueType font covering ``texts`` with reportlab; return its name.

    Parameters
    ----------
    texts : iterable of str
        Every string the document will draw with the font.
    bold : bool
        Noto Sans CJK SC Bold instead of Regular.

    Returns
    -------
    str
        The reportlab font name (``NotoSansSC-<hash>``), the same for the same
        characters and weight.

    Raises
    ------
    ConfigError
        fonts-noto-cjk is not installed.
    """
    weight = "bold" if bold else "regular"
    chars = "".join(sorted(set(ALWAYS).union(*map(set, texts))))
    digest = hashlib.sha1(f"{weight}:{chars}".encode("utf-8")).hexdigest()[:12]
    name = f"NotoSansSC{'-Bold' if bold else ''}-{digest}"
    with _lock:
        if name not in _registered:
            from reportlab.pdfbase import pdfmetrics
            from reportlab.pdfbase.ttfonts import TTFont

            pdfmetrics.registerFont(TTFont(name, io.BytesIO(_truetype_subset(
                font_file(weight), chars, name))))
            _registered[name] = True
    return name


def _face_index(path):
    """Index of :data:`FACE` in the collection (the order differs between releases)."""
    from fontTools.ttLib import TTCollection

    with TTCollection(str(path), lazy=True) as collection:
        for i, face in enumerate(collection.fonts):
            if face["name"].getDebugName(1) == FACE:
                return i
    raise ConfigError(f"{path} has no face {FACE!r}: reinstall {FONT_PACKAGE}",
                      details={"setting": FONT_PACKAGE, "file": str(path)})


def _truetype_subset(path, chars, postscript_name):
    """The glyphs of ``chars`` from the CFF collection ``path`` as TrueType font bytes."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), fontNumber=_face_index(path)) as font:
        return _convert(font, chars, postscript_name)


def _convert(font, chars, postscript_name):
    """Subset ``font`` (changed in place) to ``chars`` and return it as TrueType bytes.

    The font gets ``postscript_name``: reportlab keys fonts by it, and hands
    an earlier font of the same name (with other glyphs) to a later one.
    """
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    options = subset.Options()
    options.layout_features = []  # reportlab lays out glyph by glyph: no GSUB/GPOS needed
    options.hinting = False
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.glyph_names = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    # CFF (cubic) → glyf (quadratic), as fontTools' otf2ttf recipe does.
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for glyph in order:
        pen = TTGlyphPen(glyphs)
        glyphs[glyph].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyf[glyph] = pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    for table in ("CFF ", "VORG"):
        if table in font:
            del font[table]
    maxp = font["maxp"] = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for field in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                  "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                  "maxComponentElements"):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["head"].glyphDataFormat = 0
    post = font["post"]
    post.formatType = 2.0
    post.extraNames, post.mapping = [], {}
    post.glyphOrder = order
    font.sfntVersion = "\0\1\0\0"
    names = font["name"]
    names.names = [n for n in names.names if n.nameID != 6]
    names.setName(postscript_name, 6, 1, 0, 0)
    names.setName(postscript_name, 6, 3, 1, 0x409)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()
