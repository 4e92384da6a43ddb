"""HTML to PDF with an embedded Chinese font (WeasyPrint + Noto Sans CJK).

The font is Noto Sans CJK SC from the Debian package ``fonts-noto-cjk``
(``scripts/install.sh``), found through fontconfig by its family name;
WeasyPrint embeds the subset of glyphs a document uses, so the PDF shows
its Chinese text on a machine without the font.  Documents may load
``data:`` URLs only (inline images): nothing on the file system or the
network is read while rendering, whatever the HTML holds.
"""

#: CSS ``font-family`` for Chinese documents (fonts-noto-cjk).
FONT_FAMILY = '"Noto Sans CJK SC", "Noto Sans CJK", sans-serif'


def html_to_pdf(html):
    """Return the PDF bytes of the HTML document ``html`` (str)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols=("data",))
    return HTML(string=html, url_fetcher=fetcher, base_url=None).write_pdf()
