"""Read and write layers as GeoJSON, GeoPackage, zipped Shapefile and CSV; read XLSX.

Reading returns a GeoDataFrame in EPSG:4326 whatever the file's CRS
(:func:`geodata.crs.to_storage_crs`).  Shapefile and CSV text is decoded in
the encoding the file declares or, checked, shows; an Excel workbook is read
as the CSV of its one sheet of data.
GeoJSON is parsed here (strictly, see :mod:`geodata.geometry`) rather than
by GDAL, so that unclosed rings, NaN and truncation are caught with the
feature index; it is CRS84 unless a legacy ``crs`` member says otherwise
(RFC 7946).  Other formats go through pyogrio.  A file without a CRS is
refused unless the caller names one (``--crs``); CSV with lon/lat columns
is WGS 84 degrees by definition of those columns.  CSV text cells are
written through :func:`geodata.files.spreadsheet_text` (no formula runs when
a spreadsheet opens the file) and read back through its inverse.
"""

import codecs
import csv
import os
import tempfile
import zipfile
from datetime import date, datetime, time
from pathlib import Path
from warnings import catch_warnings, filterwarnings, warn_explicit
from xml.etree.ElementTree import ParseError

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from geodata.crs import STORAGE_SRID, declared_crs, parse_crs, to_storage_crs
from geodata.errors import BadRequestError, FeatureError, PayloadTooLargeError, ValidationError
from geodata.files import check_writable, spreadsheet_text, spreadsheet_value
from geodata.geometry import (check_geometries, geometry_from_geojson, parse_json,
                              validate_geometries)

FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile",
           ".zip": "ESRI Shapefile", ".csv": "CSV", ".xlsx": "XLSX"}
LONLAT_COLUMNS = (("lon", "lat"), ("longitude", "latitude"), ("lng", "lat"), ("x", "y"),
                  ("经度", "纬度"))
WKT_COLUMNS = ("wkt", "geometry", "geom", "WKT")
#: Shapefile (dBase) field names stop at 10 characters: these short names are
#: written on export and read back on import, so a round trip keeps every field.
SHAPEFILE_NAMES = {"parent_code": "parent", "active_from": "act_from", "active_to": "act_to",
                   "credit_code": "credit", "host_credit_code": "host",
                   "contact_name": "contact", "contact_phone": "phone_no",
                   "description": "descript", "found_date": "found", "division_code": "division",
                   "metric_epsg": "epsg"}
MAX_ZIP_MEMBERS = 50


def _suffix(path):
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValidationError(
            f"{path}: unsupported file type {suffix or '(none)'}; use one of "
            f"{', '.join(sorted(FORMATS))}", code="unsupported_format", details={"file": str(path)})
    return suffix


def read_layer(path, *, crs=None, geometry=True, layer=None, max_features=200_000,
               max_vertices=20_000, max_file_mb=100):
    """Read a file into a GeoDataFrame in EPSG:4326 (or a DataFrame without geometry).

    Caps are enforced before anything large is built: the file size (for a
    zip, the members' total uncompressed size) against ``max_file_mb``, then
    the feature count (GDAL's count, or CSV records counted while streaming)
    against ``max_features``.  Every geometry read, whatever the format, then
    passes :func:`geodata.geometry.check_geometries` (empty parts and rings,
    short rings, NaN, vertex cap) before any GEOS predicate touches it, and,
    when ``layer`` is given, :func:`geodata.geometry.validate_geometries` for
    that layer once in EPSG:4326 (type, lon/lat range, OGC validity).

    Parameters
    ----------
    path : str or Path
        ``.geojson``/``.json``, ``.gpkg``, ``.shp``, ``.zip`` (one shapefile),
        ``.csv`` (a WKT column, or lon/lat columns) or ``.xlsx`` (read as
        the CSV of its one sheet of data).  Column names are lower-cased.
    crs : str, optional
        CRS to assume when the file declares none; a declared CRS wins.
    geometry : bool
        False for attribute-only layers (grid staff).
    layer : {"parks", "grids", "enterprises", "hazards"}, optional
        Validate the geometries for this layer; they come back promoted to
        MultiPolygons where the layer stores those, exteriors counter-clockwise.
    max_features, max_vertices, max_file_mb : int
        Caps: features per file, vertices per geometry, megabytes per file.

    Returns
    -------
    (GeoDataFrame or DataFrame, list of str)
        The features and non-fatal warnings.

    Raises
    ------
    GridmapError
        ``invalid_json``, ``missing_crs``, ``unknown_crs``, ``empty_file``,
        ``unsupported_format``, ``unreadable_file``, ``payload_too_large``,
        ``incomplete_shapefile``, ``unknown_encoding``, ``encoding_mismatch``,
        ``duplicate_column``, ``no_datum_transformation``, the workbook
        refusals of :func:`_read_xlsx`, or a ``FeatureError`` naming the
        feature and field.
    """
    path = str(path)
    suffix = _suffix(path)
    if not os.path.isfile(path):
        raise ValidationError(f"{path}: no such file", code="file_not_found",
                              details={"file": path})
    max_bytes = int(max_file_mb * 2**20)
    size = os.path.getsize(path)
    if size > max_bytes:
        raise PayloadTooLargeError(f"{path}: {size / 2**20:.1f} MB exceed the cap of "
                                   f"{max_file_mb:g} MB (GRIDMAP_MAX_FILE_MB)",
                                   details={"file": path, "bytes": size, "cap_mb": max_file_mb})
    warnings = set()
    if suffix in (".geojson", ".json"):
        frame, declared = _read_geojson(path, max_features, max_vertices, warnings)
    elif suffix == ".csv":
        frame, declared = _read_csv(path, geometry, crs, max_features, max_vertices, warnings)
    elif suffix == ".xlsx":
        frame, declared = _table_geometry(_read_xlsx(path, max_features, max_file_mb, warnings),
                                          path, geometry, crs, max_vertices)
    else:
        source = _zip_shapefile_path(path, max_file_mb) if suffix == ".zip" else path
        frame, declared = _read_ogr(path, source, geometry, max_features, warnings)
    frame = _lower_case_columns(frame, path)
    if FORMATS[suffix] == "ESRI Shapefile":
        frame = frame.rename(columns={v: k for k, v in SHAPEFILE_NAMES.items()})
    if len(frame) == 0:
        raise ValidationError(f"{path}: the file has no features", code="empty_file",
                              details={"file": path})
    if not geometry or "geometry" not in frame:
        return pd.DataFrame(frame.drop(columns="geometry", errors="ignore")), sorted(warnings)
    check_geometries(frame["geometry"].to_numpy(), file=path, max_vertices=max_vertices)
    if declared is None:
        if crs is None:
            prj = ("; a shapefile declares it in its .prj, which is missing"
                   if FORMATS[suffix] == "ESRI Shapefile" else "")
            raise ValidationError(
                f"{path}: the file declares no CRS; give one with --crs (e.g. --crs "
                f"EPSG:4490){prj}", code="missing_crs", details={"file": path})
        declared = parse_crs(crs, path)
    geoms, more = to_storage_crs(frame["geometry"].to_numpy(), CRS.from_user_input(declared),
                                 file=path)
    warnings.update(more)
    gdf = gpd.GeoDataFrame(frame.drop(columns="geometry"), geometry=geoms, crs=STORAGE_SRID)
    if layer is not None:
        geoms, more = validate_geometries(gdf.geometry.to_numpy(), layer, file=path,
                                          max_vertices=max_vertices)
        gdf["geometry"] = geoms
        warnings.update(more)
    return gdf, sorted(warnings)


def _lower_case_columns(frame, path):
    """Return ``frame`` with its column names in lower case (``CODE`` -> ``code``).

    ArcGIS writes shapefile fields in upper case and spreadsheets keep
    whatever the header says; the import columns are lower case.  Two
    columns that differ only in case are refused, as a repeated CSV column is.

    Raises
    ------
    ValidationError
        ``duplicate_column``.
    """
    lower = [c.lower() if isinstance(c, str) else c for c in frame.columns]
    twice = sorted({c for c in lower if lower.count(c) > 1})
    if twice:
        raise ValidationError(f"{path}: columns {', '.join(map(repr, twice))} appear more than "
                              "once (ignoring case)", code="duplicate_column",
                              details={"file": path, "columns": twice[:20]})
    frame.columns = lower
    return frame


def _too_many(path, count, max_features):
    if count > max_features:
        raise PayloadTooLargeError(
            f"{path}: {count} features exceed the cap of {max_features} (GRIDMAP_MAX_FEATURES)",
            details={"file": path, "features": count, "cap": max_features})


def _feature_count(source):
    """Return GDAL's feature count without building features (None if it cannot tell)."""
    try:
        count = pyogrio.read_info(source, force_feature_count=True)["features"]
    except pyogrio.errors.DataSourceError:
        return None
    return count if count >= 0 else None


def _read_ogr(path, source, geometry, max_features, notes):
    """Read a GeoPackage or Shapefile through GDAL, counting its features first.

    GEOS refuses to build some geometries GDAL hands over (an unclosed ring,
    a two-point ring): those are read as missing, then named with GEOS's
    reason by reading the first such feature's raw WKB again.  GDAL's and
    numpy's warnings about them (unclosed ring, NaN) are silenced: the
    feature is refused below, or by :func:`check_geometries`, with its index.
    pyogrio reads measured (M) geometries, which CAD exports write, as 2D
    and warns: that becomes a warning of the import, as dropped Z does.  A
    shapefile whose rings GDAL re-nests because their winding does not match
    (a hole outside its shell read as another part) is refused: that is a repair.
    A shapefile's text is read as raw bytes and decoded by
    :func:`_decode_dbf`, since GDAL alone turns GBK without a ``.cpg`` into
    Latin-1 mojibake.
    """
    shapefile = FORMATS[_suffix(path)] == "ESRI Shapefile"
    parts = _shapefile_parts(path, source) if shapefile else None
    with catch_warnings(record=True) as caught, np.errstate(invalid="ignore"):
        filterwarnings("ignore", "Non closed ring detected", RuntimeWarning)
        filterwarnings("always", r"Measured \(M\) geometry types", UserWarning)
        filterwarnings("always", r".*invalid winding order\. Autocorrecting", RuntimeWarning)
        frame = _read_ogr_frame(path, source, geometry, max_features,
                                "ISO-8859-1" if shapefile else None)
    for caught_warning in caught:
        if "Measured (M)" in str(caught_warning.message):
            notes.add("dropped M (measure) values: gridmap stores 2D geometries")
        elif "invalid winding order. Autocorrecting" in str(caught_warning.message):
            # A shapefile says which ring is a hole by its winding; GDAL turned a hole that
            # lies outside its shell into another part: a silent repair (GDAL does not say
            # which feature).
            raise FeatureError("a counter-clockwise ring (a hole) lies outside its shell; GDAL "
                               "would read it as another part. Fix the winding or the hole "
                               "(QGIS: Check Validity)", code="invalid_geometry", file=path,
                               field="geometry")
        else:
            warn_explicit(caught_warning.message, caught_warning.category,
                          caught_warning.filename, caught_warning.lineno)
    if shapefile:
        frame = _decode_dbf(frame, parts, path, notes)
    return frame, getattr(frame, "crs", None)


def _read_ogr_frame(path, source, geometry, max_features, encoding):
    try:
        layers = pyogrio.list_layers(source)
    except pyogrio.errors.DataSourceError as exc:
        raise ValidationError(f"{path}: cannot be read as {FORMATS[_suffix(path)]} ({exc})",
                              code="unreadable_file", details={"file": path}) from None
    if len(layers) != 1:
        # GDAL would read the first layer and ignore the rest (geopandas only warns), and
        # the layers may each have their own CRS: one file is one layer.
        names = [str(n) for n in layers[:, 0]] if len(layers) else []
        raise ValidationError(f"{path}: a file must hold exactly one layer, found {len(names)}"
                              f" ({', '.join(names[:10])})", code="multiple_layers",
                              details={"file": path, "layers": names[:100]})
    count = _feature_count(source)
    _too_many(path, count or 0, max_features)
    try:
        frame = pyogrio.read_dataframe(source, read_geometry=geometry, encoding=encoding,
                                       on_invalid="ignore", fid_as_index=True)
    except pyogrio.errors.DataSourceError as exc:
        raise ValidationError(f"{path}: cannot be read as {FORMATS[_suffix(path)]} ({exc})",
                              code="unreadable_file", details={"file": path}) from None
    _too_many(path, len(frame), max_features)
    fids = frame.index.to_numpy()
    frame = frame.reset_index(drop=True)
    missing = (np.flatnonzero(frame["geometry"].isna().to_numpy())
               if geometry and "geometry" in frame else [])
    if len(missing):
        wkb = pyogrio.raw.read(source, columns=[], fids=fids[missing[:1]])[2][0]
        try:
            if wkb is not None:
                shapely.from_wkb(wkb)
        except shapely.errors.GEOSException as exc:
            raise FeatureError(f"geometry cannot be read ({exc})", code="invalid_geometry",
                               file=path, index=int(missing[0]), field="geometry") from None
    return frame


def _shapefile_parts(path, source):
    """The leading bytes of a shapefile's ``.dbf`` and ``.cpg`` (None where missing).

    The parts are matched on the ``.shp``'s name ignoring case, as GDAL
    does, beside it on disk or in the same zip.  A missing ``.shx`` or
    ``.dbf`` is refused: GDAL would fail on the first with advice about a
    config option, and read the second as a layer without attributes.

    Raises
    ------
    ValidationError
        ``incomplete_shapefile`` naming the missing part.
    """
    wanted = {".shx": 0, ".dbf": 32, ".cpg": 100}
    if source.startswith("/vsizip/"):
        stem = source[len(f"/vsizip/{os.path.abspath(path)}/"):-4]
        with zipfile.ZipFile(path) as archive:
            names = {n.lower(): n for n in archive.namelist()}
            found = {}
            for ext, size in wanted.items():
                name = names.get((stem + ext).lower())
                if name is not None:
                    with archive.open(name) as fh:
                        found[ext] = fh.read(size)
    else:
        shp = Path(path)
        names = {p.name.lower(): p for p in shp.parent.iterdir()}
        found = {}
        for ext, size in wanted.items():
            part = names.get((shp.stem + ext).lower())
            if part is not None:
                with open(part, "rb") as fh:
                    found[ext] = fh.read(size)
    for ext, what in ((".shx", "the index"), (".dbf", "the attributes: codes and names")):
        if ext not in found:
            raise ValidationError(f"{path}: the shapefile has no {ext} ({what}); a shapefile is "
                                  "its .shp, .shx, .dbf and .prj (and .cpg) together: copy or "
                                  "zip them all", code="incomplete_shapefile",
                                  details={"file": path, "missing": ext})
    return found


#: GBK, GB 2312 and code page 936 are subsets of GB 18030: one codec reads them all.
_GB = "gb18030"
_GB_LABELS = ("CP936", "GBK", "GB2312", "GB18030", "CP54936", "EUCCN", "MS936")
#: dBase language driver ids (byte 29 of the header) that mean code page 936.
_GB_LDIDS = (0x4D, 0x7A)


def _dbf_codec(parts, path):
    """``(codec, source)``: the encoding a shapefile declares, or ``(None, None)``.

    A ``.cpg`` wins (ArcGIS and QGIS write ``UTF-8``, ``GBK`` or a Windows
    code page number such as ``936`` or ``65001``); else the ``.dbf``'s
    language driver id, when it says code page 936.
    """
    cpg = parts.get(".cpg")
    if cpg is not None:
        name = cpg.decode("ascii", "replace").strip()
        label = name.upper().replace("-", "").replace("_", "").replace(" ", "")
        label = "CP" + label if label.isdigit() else label
        source = f"its .cpg ({name!r})"
        if label in _GB_LABELS:
            return _GB, source
        if label in ("UTF8", "CP65001"):
            return "utf-8", source
        try:
            return codecs.lookup(name).name, source
        except LookupError:
            raise ValidationError(f"{path}: the .cpg names an unknown encoding {name!r}; write "
                                  "UTF-8 or GBK in it", code="unknown_encoding",
                                  details={"file": path, "encoding": name[:40]}) from None
    dbf = parts.get(".dbf") or b""
    if len(dbf) > 29 and dbf[29] in _GB_LDIDS:
        return _GB, "its .dbf's language driver (code page 936)"
    return None, None


def _decodes(data, codec):
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def _decode_dbf(frame, parts, path, notes):
    """Decode a shapefile's text, read as raw bytes (Latin-1), in the encoding it has.

    The declared encoding (:func:`_dbf_codec`) is checked, not trusted:
    text it cannot decode, or UTF-8 text in a file that says GBK (GBK would
    decode it, as mojibake), is refused.  Without a declaration, UTF-8 is
    taken when all the text is UTF-8, else GB 18030 (what Chinese Windows
    writes) when all of it is that, with a warning.

    Raises
    ------
    ValidationError
        ``encoding_mismatch`` (a FeatureError naming feature and field when
        a value is at fault) or ``unknown_encoding``.
    """
    columns = [c for c in frame.columns if c != "geometry" and (
        pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c]))]
    raw = {c: [v.encode("latin-1") if isinstance(v, str) else v for v in frame[c]]
           for c in columns}
    names = [c.encode("latin-1") for c in frame.columns if c != "geometry"]
    texts = [v for values in raw.values() for v in values
             if isinstance(v, bytes) and not v.isascii()] + [n for n in names if not n.isascii()]
    if not texts:
        return frame
    codec, source = _dbf_codec(parts, path)
    utf8 = all(_decodes(v, "utf-8") for v in texts)
    if codec is None:
        codec = "utf-8" if utf8 else _GB if all(_decodes(v, _GB) for v in texts) else None
        if codec is None:
            raise ValidationError(f"{path}: the .dbf's text is neither UTF-8 nor GBK/GB 18030 and "
                                  "no .cpg names its encoding: add a .cpg", code="unknown_encoding",
                                  details={"file": path})
        if codec == _GB:
            notes.add("no .cpg names the shapefile's text encoding: read as GBK (GB 18030)")
    elif codec == _GB and utf8 and sum(len(v.decode("utf-8")) for v in texts) >= 4:
        # UTF-8 bytes of Chinese text are valid GBK too, as mojibake (东区 -> 涓滃尯).
        raise ValidationError(f"{path}: {source} says GBK but the .dbf's text is UTF-8; correct "
                              "the .cpg to UTF-8", code="encoding_mismatch",
                              details={"file": path, "encoding": codec})
    out = {}
    for column in frame.columns:
        if column == "geometry":
            out[column] = frame[column]
            continue
        try:
            name = column.encode("latin-1").decode(codec)
        except UnicodeDecodeError:
            raise ValidationError(f"{path}: a field name is not {codec} as {source or 'assumed'}"
                                  " says", code="encoding_mismatch",
                                  details={"file": path, "encoding": codec}) from None
        values = raw.get(column)
        if values is None:
            out[name] = frame[column]
            continue
        decoded = []
        for i, value in enumerate(values):
            try:
                decoded.append(value.decode(codec) if isinstance(value, bytes) else value)
            except UnicodeDecodeError:
                raise FeatureError(f"text is not {codec} as {source} says; correct the .cpg",
                                   code="encoding_mismatch", file=path, index=i,
                                   field=name, encoding=codec) from None
        out[name] = pd.Series(decoded, index=frame.index)
    return type(frame)(out, index=frame.index, crs=getattr(frame, "crs", None)) \
        if isinstance(frame, gpd.GeoDataFrame) else pd.DataFrame(out, index=frame.index)


def _read_geojson(path, max_features, max_vertices, warnings):
    # GDAL counts a large GeoJSON streaming, in bounded memory; json.loads
    # would take ~15 bytes of Python objects per byte of file.
    _too_many(path, _feature_count(path) or 0, max_features)
    with open(path, "rb") as fh:
        text = fh.read()
    if not text.strip():
        raise ValidationError(f"{path}: the file is empty", code="empty_file",
                              details={"file": path})
    try:
        doc = parse_json(text, source=path)
    except FeatureError as exc:
        raise _in_feature(exc, path) from None
    if not isinstance(doc, dict) or doc.get("type") not in ("FeatureCollection", "Feature"):
        raise FeatureError("not a GeoJSON FeatureCollection or Feature", code="invalid_geojson",
                           file=path)
    features = [doc] if doc["type"] == "Feature" else doc.get("features")
    if not isinstance(features, list):
        raise FeatureError("'features' must be an array", code="invalid_geojson", file=path)
    _too_many(path, len(features), max_features)
    declared = declared_crs(doc.get("crs"), path)
    rows, geoms = [], []
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise FeatureError("not a GeoJSON Feature", code="invalid_geojson", file=path,
                               index=i)
        _same_crs(feature, declared, path, i)
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise FeatureError("'properties' must be an object", code="invalid_geojson",
                               file=path, index=i, field="properties")
        rows.append(props)
        geoms.append(geometry_from_geojson(feature.get("geometry"), index=i, file=path,
                                           max_vertices=max_vertices, warnings=warnings,
                                           crs_checked=True))
    frame = pd.DataFrame(rows)
    frame["geometry"] = np.array(geoms, dtype=object) if geoms else []
    return frame, declared


def _same_crs(feature, declared, path, index):
    """Refuse a legacy ``crs`` member on a feature or its geometry that differs from the file's.

    The 2008 GeoJSON format allowed one on any object; GDAL ignores all but
    the top one, so such a feature's coordinates would be read in the
    file's CRS, which for degrees read as metres still lies in range.

    Raises
    ------
    FeatureError
        422 ``mixed_crs`` naming the feature.
    """
    geometry = feature.get("geometry")
    for field, member in (("crs", feature), ("geometry", geometry)):
        if isinstance(member, dict) and "crs" in member and not declared_crs(
                member["crs"], path).equals(declared):
            raise FeatureError(f"declares its own CRS {member['crs']!r:.80}, not the file's "
                               f"{declared.to_string()}: one import has one CRS; declare it "
                               "once, at the top of the file", code="mixed_crs", file=path,
                               index=index, field=field)


def _csv_dialect(path, warnings):
    """``(encoding, delimiter)`` of a CSV as Excel and other tools write it.

    A byte order mark decides (UTF-8, or UTF-16 from Excel's "Unicode
    text"); else the file is UTF-8 if all of it decodes as such, else GB
    18030 (what Excel writes for "CSV" on Chinese Windows; GBK and GB 2312
    are subsets) with a warning.  The delimiter is a comma, or a tab when
    the header has tabs and no comma (Excel's "Unicode text").  The check
    streams the file in blocks, in bounded memory.

    Raises
    ------
    ValidationError
        ``unknown_encoding``: neither UTF-8, UTF-16 nor GB 18030.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        if _holds_nul(path):  # no text file without a BOM does; a PNG renamed .csv does
            raise ValidationError(f"{path}: not a readable CSV: it holds NUL bytes, so it is "
                                  "not text", code="unreadable_file", details={"file": path})
        encoding = next((e for e in ("utf-8", _GB) if _file_decodes(path, e)), None)
        if encoding is None:
            raise ValidationError(f"{path}: the text is neither UTF-8, UTF-16 nor GBK/GB 18030; "
                                  "save it as \"CSV UTF-8\"", code="unknown_encoding",
                                  details={"file": path})
        if encoding == _GB:
            warnings.add("the CSV is not UTF-8: read as GBK (GB 18030)")
    if not _file_decodes(path, encoding):  # a byte order mark is a claim, checked like the rest
        raise ValidationError(f"{path}: the text does not decode as the {encoding} its byte "
                              "order mark announces; save it as \"CSV UTF-8\"",
                              code="unknown_encoding", details={"file": path})
    with open(path, newline="", encoding=encoding) as fh:
        header = fh.readline()
    return encoding, "\t" if "\t" in header and "," not in header else ","


def _holds_nul(path):
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            if b"\0" in block:
                return True
    return False


def _file_decodes(path, encoding):
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _csv_records(path, encoding, delimiter):
    """Count a CSV's records in bounded memory: chunks of the first column only."""
    chunks = pd.read_csv(path, usecols=[0], dtype=str, keep_default_na=False,
                         encoding=encoding, sep=delimiter, chunksize=50_000)
    with chunks:
        return sum(len(chunk) for chunk in chunks)


def _in_feature(error, path):
    """Return ``error`` (a value refused while parsing) naming its feature and field.

    The JSON pointer ``/features/3/properties/name`` (``/properties/name`` in
    a lone Feature) becomes feature 3, field ``name``; anything under
    ``geometry`` is field ``geometry``.
    """
    parts = [p.replace("~1", "/").replace("~0", "~")
             for p in error.details.get("pointer", "").split("/")[1:]]
    index = None
    if parts[:1] == ["features"] and len(parts) > 1 and parts[1].isdigit():
        index, parts = int(parts[1]), parts[2:]
    elif parts[:1] in (["properties"], ["geometry"]):
        index = 0
    field = (parts[1] if parts[:1] == ["properties"] and len(parts) > 1
             else "geometry" if parts[:1] == ["geometry"] else None)
    return FeatureError(error.reason, code=error.code, file=path, index=index, field=field,
                        pointer=error.details.get("pointer"))


def _refuse_duplicate_columns(path, encoding, delimiter):
    """Refuse a CSV whose header names a column twice.

    pandas would rename the second ``name`` to ``name.1`` and the import
    would silently take the first; a GeoJSON object with a key twice is
    refused the same way (``duplicate_key``).
    """
    with open(path, newline="", encoding=encoding) as fh:
        header = next(csv.reader(fh, delimiter=delimiter), [])
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ValidationError(f"{path}: the header names column(s) {', '.join(map(repr, twice))}"
                              " more than once", code="duplicate_column",
                              details={"file": path, "columns": twice[:20]})


def _read_csv(path, geometry, crs, max_features, max_vertices, warnings):
    encoding, delimiter = _csv_dialect(path, warnings)
    try:
        _refuse_duplicate_columns(path, encoding, delimiter)
        _too_many(path, _csv_records(path, encoding, delimiter), max_features)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding,
                            sep=delimiter)
    except (pd.errors.ParserError, UnicodeError, pd.errors.EmptyDataError,
            csv.Error) as exc:
        raise ValidationError(f"{path}: not a readable CSV ({exc})", code="unreadable_file",
                              details={"file": path}) from None
    frame = frame.replace({"": None}).map(spreadsheet_value)
    return _table_geometry(frame, path, geometry, crs, max_vertices)


def _table_geometry(frame, path, geometry, crs, max_vertices):
    """``(frame, CRS)`` of a table of text cells (CSV, XLSX) with its geometry column built.

    Lon/lat columns (WGS 84 unless ``crs`` says otherwise) or a WKT column
    (whose CRS ``crs`` must name) make the points or shapes.
    """
    if not geometry:
        return frame, None
    lower = {c.lower(): c for c in frame.columns}
    for lon, lat in LONLAT_COLUMNS:
        if lon in lower and lat in lower:
            # Full-width digits (１１４．３) are what a Chinese input method types.
            xs = pd.to_numeric(frame[lower[lon]].str.normalize("NFKC"), errors="coerce")
            ys = pd.to_numeric(frame[lower[lat]].str.normalize("NFKC"), errors="coerce")
            bad = np.flatnonzero(xs.isna() | ys.isna())
            if len(bad):
                raise FeatureError(f"'{lower[lon]}'/'{lower[lat]}' must be numbers",
                                   code="invalid_coordinate", file=path, index=int(bad[0]),
                                   field=lower[lon])
            frame = frame.drop(columns=[lower[lon], lower[lat]])
            frame["geometry"] = shapely.points(xs.to_numpy(), ys.to_numpy())
            return frame, parse_crs(crs, path) if crs else CRS.from_epsg(STORAGE_SRID)
    for name in WKT_COLUMNS:
        if name in frame.columns:
            wkt = frame.pop(name)
            # Each vertex but the first follows a comma, as does each EMPTY but the
            # first: the vertex cap is checked on the text before GEOS parses it.
            vertices = wkt.str.count(",") + 1 - wkt.str.upper().str.count("EMPTY")
            over = np.flatnonzero(vertices.fillna(0).to_numpy() > max_vertices)
            if len(over):
                raise FeatureError(f"{int(vertices.iloc[over[0]])} vertices exceed the cap of "
                                   f"{max_vertices}", code="too_many_vertices", file=path,
                                   index=int(over[0]), field=name)
            with np.errstate(invalid="ignore"):  # NaN coordinates are refused below, by name
                geoms = shapely.from_wkt(wkt.to_numpy(), on_invalid="ignore")
            bad = np.flatnonzero(shapely.is_missing(geoms) & wkt.notna().to_numpy())
            if len(bad):
                raise FeatureError("not valid WKT", code="invalid_geometry", file=path,
                                   index=int(bad[0]), field=name)
            frame["geometry"] = geoms
            return frame, parse_crs(crs, path) if crs else None
    raise ValidationError(f"{path}: a table needs a WKT column ({', '.join(WKT_COLUMNS)}) or "
                          "lon/lat columns", code="missing_geometry", details={"file": path})


#: Excel holds 15 significant digits: a longer number (a credit code typed as one) is lost.
EXCEL_DIGITS = 15


def _read_xlsx(path, max_features, max_file_mb, warnings):
    """Read the one visible, non-empty sheet of an Excel workbook as a table of text cells.

    What a planner's workbook holds, and what happens to it:

    - empty sheets and hidden sheets are skipped (a hidden one with data is
      named in a warning); two visible sheets with data are refused, as a
      GeoPackage of two layers is;
    - the first row with a value is the header; empty rows are skipped;
    - a formula gives the value Excel or WPS saved with it; one with no
      saved value (a workbook a program wrote and nobody opened) is refused,
      as are cells holding an error (``#REF!``) and merged cells;
    - numbers become text (``12.0`` -> ``12``), dates ISO ``YYYY-MM-DD``;
      a number of more than 15 digits (a credit code Excel turned into
      ``9.14E+17``) is refused, since its digits are gone.

    The workbook (a zip) is checked against ``max_file_mb`` uncompressed and
    the sheet's row count against ``max_features`` before cells are read.

    Raises
    ------
    GridmapError
        ``unreadable_file``, ``payload_too_large``, ``multiple_layers``,
        ``merged_cells``, ``empty_file`` or a FeatureError (``formula_without_value``,
        ``spreadsheet_error``, ``number_too_long``) naming the feature and column.
    """
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(m.file_size for m in archive.infolist())
    except zipfile.BadZipFile:
        raise ValidationError(f"{path}: not an Excel .xlsx workbook (an old .xls? save it as "
                              ".xlsx or CSV UTF-8)", code="unreadable_file",
                              details={"file": path}) from None
    if unpacked > max_file_mb * 2**20:
        raise PayloadTooLargeError(f"{path}: the workbook unpacks to {unpacked / 2**20:.0f} MB, "
                                   f"over the cap of {max_file_mb:g} MB (GRIDMAP_MAX_FILE_MB)",
                                   details={"file": path, "cap_mb": max_file_mb})
    try:
        with catch_warnings():
            # openpyxl warns about features it drops (data validation, styles): not our data.
            filterwarnings("ignore", category=UserWarning, module="openpyxl")
            # Opened here and closed whatever happens: openpyxl leaves its file open on errors.
            with open(path, "rb") as fh:
                formulas = _xlsx_formula_cells(load_workbook(fh, read_only=True), path,
                                               max_features)
            with open(path, "rb") as fh:
                values = load_workbook(fh, data_only=True)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OSError,
            zipfile.BadZipFile, ParseError) as exc:
        raise ValidationError(f"{path}: cannot be read as an Excel workbook ({exc})",
                              code="unreadable_file", details={"file": path}) from None
    sheets = []
    for sheet in values.worksheets:
        if not any(v is not None for row in sheet.iter_rows(values_only=True) for v in row):
            continue
        if sheet.sheet_state != "visible":
            warnings.add(f"skipped the hidden sheet {sheet.title!r}")
            continue
        sheets.append(sheet)
    if not sheets:
        raise ValidationError(f"{path}: the workbook has no data", code="empty_file",
                              details={"file": path})
    if len(sheets) > 1:
        names = [s.title for s in sheets]
        raise ValidationError(f"{path}: a workbook must hold one sheet of data, found {len(names)}"
                              f" ({', '.join(names[:10])}); delete or hide the others",
                              code="multiple_layers", details={"file": path, "layers": names})
    sheet = sheets[0]
    if sheet.merged_cells.ranges:
        merged = sorted(str(r) for r in sheet.merged_cells.ranges)
        raise ValidationError(f"{path}: sheet {sheet.title!r} has merged cells "
                              f"({', '.join(merged[:10])}); unmerge them and fill every row",
                              code="merged_cells", details={"file": path, "cells": merged[:100]})
    rows = [cells for cells in sheet.iter_rows() if any(c.value is not None for c in cells)]
    columns = [str(c.value).strip() if c.value is not None else None for c in rows[0]]
    table = []
    for index, cells in enumerate(rows[1:]):
        record = {}
        for column, cell in zip(columns, cells):
            formula = (sheet.title, cell.coordinate) in formulas
            if column is None:
                if cell.value is not None:
                    raise FeatureError(f"cell {cell.coordinate} has a value but its column has "
                                       "no header", code="missing_header", file=path,
                                       index=index)
                continue
            record[column] = _xlsx_text(cell, formula, path, index, column)
        table.append(record)
    named = [c for c in columns if c is not None]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise ValidationError(f"{path}: the header names column(s) {', '.join(map(repr, twice))}"
                              " more than once", code="duplicate_column",
                              details={"file": path, "columns": twice[:20]})
    return pd.DataFrame(table, columns=named, dtype=object)


def _xlsx_formula_cells(book, path, max_features):
    """``{(sheet, cell)}`` of every formula, streaming the workbook once in bounded memory.

    The same pass counts each sheet's rows against ``max_features`` before
    the workbook is loaded whole.
    """
    found = set()
    try:
        for sheet in book.worksheets:
            count = 0
            for row in sheet.iter_rows():
                count += 1
                _too_many(path, count - 1, max_features)
                found.update((sheet.title, c.coordinate) for c in row if c.data_type == "f")
    finally:
        book.close()
    return found


def _xlsx_text(cell, formula, path, index, column):
    """One cell as the text a CSV of it would hold (None when blank)."""
    value = cell.value
    where = {"file": path, "index": index, "field": column, "cell": cell.coordinate}
    if formula and value is None:
        raise FeatureError(f"cell {cell.coordinate} holds a formula with no saved value; open "
                           "the workbook in Excel or WPS and save it", code="formula_without_value",
                           **where)
    if cell.data_type == "e":
        raise FeatureError(f"cell {cell.coordinate} holds the spreadsheet error {value}",
                           code="spreadsheet_error", **where)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        digits = len(str(abs(int(value)))) if np.isfinite(value) else 0
        if digits > EXCEL_DIGITS:
            raise FeatureError(f"cell {cell.coordinate} is a number of {digits} digits, more "
                               f"than Excel keeps ({EXCEL_DIGITS}): a code typed as a number "
                               "has lost its last digits. Format the column as text and enter "
                               "the codes again", code="number_too_long", **where)
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _zip_shapefile_path(path, max_file_mb):
    """Check a zipped shapefile without extracting it and return its GDAL /vsizip/ path.

    Member names are never used as paths on disk (GDAL reads inside the
    archive), so ``../`` entries cannot escape; they are refused anyway, as
    are archives whose declared size or member count is over the caps.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise ValidationError(f"{path}: not a valid zip archive", code="unreadable_file",
                              details={"file": path}) from None
    if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > max_file_mb * 2**20:
        raise PayloadTooLargeError(f"{path}: archive too large (over {MAX_ZIP_MEMBERS} members "
                                   f"or {max_file_mb:g} MB uncompressed, GRIDMAP_MAX_FILE_MB)",
                                   details={"file": path})
    for m in members:
        if _unsafe_member(m):
            raise ValidationError(f"{path}: unsafe archive member {m.filename!r} (absolute, "
                                  "'..', a drive, a control character or a link)",
                                  code="unsafe_archive",
                                  details={"file": path, "member": m.filename})
    shps = [m.filename for m in members if m.filename.lower().endswith(".shp")]
    if len(shps) != 1:
        raise ValidationError(f"{path}: the archive must hold exactly one .shp, found "
                              f"{len(shps)}", code="unreadable_file", details={"file": path})
    return f"/vsizip/{os.path.abspath(path)}/{shps[0]}"


def _unsafe_member(member):
    """True for a zip member whose name could leave a folder it were extracted to, or a link.

    Windows separators and drives count too (``../x.shp`` written with a
    backslash, ``C:x.shp``): another tool extracting the same archive would
    follow them.
    """
    name = member.filename
    parts = name.replace("\\", "/").split("/")
    return (parts[0] == "" or ":" in parts[0] or ".." in parts
            or any(ord(c) < 32 or c == "\x7f" for c in name)
            or (member.external_attr >> 16) & 0o170000 == 0o120000)


def _refuse_collections(frame, path):
    """Refuse to write GeometryCollections: the importer refuses them, so no round trip could.

    Raises
    ------
    ValidationError
        ``unsupported_geometry_type`` naming the features (their ``code`` when
        the layer has one); nothing is written.
    """
    bad = np.flatnonzero((frame.geometry.geom_type == "GeometryCollection").to_numpy())
    if not len(bad):
        return
    names = (frame["code"] if "code" in frame else pd.Series(frame.index)).iloc[bad]
    shown = ", ".join(map(str, names.iloc[:10]))
    raise ValidationError(
        f"{path}: {len(bad)} features are GeometryCollections ({shown}); a layer holds one "
        "geometry type and the importer refuses collections, so nothing was written",
        code="unsupported_geometry_type",
        details={"file": str(path), "features": [int(i) for i in bad[:100]]})


#: The longest field name and text value (in bytes) a dBase file holds.
DBF_MAX_NAME = 10
DBF_MAX_TEXT = 254


def _refuse_shapefile_limits(frame, path):
    """Refuse a Shapefile export that GDAL would cut short or fail half-way.

    GDAL truncates a text value over 254 bytes (84 Chinese characters in
    UTF-8; names may have 200) and launders a field name over 10 bytes,
    warning only, so the file would not import back as it was; and a
    Shapefile holds one kind of geometry, so enterprises with parcels and
    gate points failed at the first point with a traceback.

    Raises
    ------
    ValidationError
        ``shapefile_limit`` naming the feature and field; nothing is written.
    """
    kind_of = frame.geometry.geom_type.str.replace("Multi", "")
    kinds = sorted(set(kind_of.dropna()))
    if len(kinds) > 1:
        first = kind_of.dropna().iloc[0]
        other = int(np.flatnonzero((kind_of.notna() & (kind_of != first)).to_numpy())[0])
        which = f"index {other}" + (f" ({frame['code'].iloc[other]})" if "code" in frame else "")
        raise ValidationError(f"{path}: a Shapefile holds one kind of geometry and this layer "
                              f"has {' and '.join(kinds)} geometries (feature {which} is a "
                              f"{kind_of.iloc[other]}, the first one a {first}); export it as "
                              ".gpkg or .geojson",
                              code="shapefile_limit",
                              details={"file": str(path), "geometry_types": kinds,
                                       "feature": other})
    for column in frame.columns:
        if column == "geometry":
            continue
        if len(str(column).encode("utf-8")) > DBF_MAX_NAME:
            raise ValidationError(f"{path}: field name {column!r} is longer than a Shapefile "
                                  f"holds ({DBF_MAX_NAME} bytes); export to .gpkg",
                                  code="shapefile_limit",
                                  details={"file": str(path), "field": str(column)})
        sizes = frame[column].map(lambda v: len(v.encode("utf-8")) if isinstance(v, str) else 0)
        over = np.flatnonzero(sizes.to_numpy() > DBF_MAX_TEXT)
        if len(over):
            i = int(over[0])
            which = frame["code"].iloc[i] if "code" in frame else i
            raise ValidationError(
                f"{path}: feature {which}: field {column!r} is {int(sizes.iloc[i])} bytes of "
                f"UTF-8, more than a Shapefile holds ({DBF_MAX_TEXT}); {len(over)} such values. "
                "Export to .gpkg or .geojson, which keep them whole", code="shapefile_limit",
                details={"file": str(path), "feature": i, "field": str(column),
                         "features": [int(j) for j in over[:100]]})


def write_layer(frame, path):
    """Write a (Geo)DataFrame to ``path``; the format follows the extension.

    GeoJSON is written per RFC 7946 (EPSG:4326, no ``crs`` member); a
    ``.zip`` holds one Shapefile with its ``.prj``; CSV gets a ``wkt``
    column.  Files QGIS opens as they are.  Everything is written in a
    temporary folder beside ``path`` and moved onto it at the end, so a
    failed export leaves the previous file (or none), never a partial one.
    """
    path = Path(path)
    suffix = _suffix(path)
    if isinstance(frame, gpd.GeoDataFrame):
        _refuse_collections(frame, path)
    if suffix == ".xlsx":
        raise BadRequestError(f"{path}: layers are exported as .gpkg, .geojson, .zip, .shp or "
                              ".csv (Excel opens the CSV)", code="unsupported_format")
    if suffix != ".csv" and not isinstance(frame, gpd.GeoDataFrame):
        raise BadRequestError(f"{path}: a layer without geometry can only be written as .csv",
                              code="unsupported_format")
    check_writable(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        out = Path(tmp) / path.name
        if suffix == ".csv":
            # Text a spreadsheet would run as a formula gets a quote; the import removes it.
            table = pd.DataFrame(frame.drop(columns="geometry", errors="ignore")).map(
                spreadsheet_text)
            if isinstance(frame, gpd.GeoDataFrame):
                table["wkt"] = shapely.to_wkt(frame.geometry.to_numpy(), rounding_precision=-1)
            table.to_csv(out, index=False, encoding="utf-8")
        elif FORMATS[suffix] == "ESRI Shapefile":
            shp = Path(tmp) / "shp" / (path.stem + ".shp")
            shp.parent.mkdir()
            table = frame.rename(columns=SHAPEFILE_NAMES)
            _refuse_shapefile_limits(table, path)
            pyogrio.write_dataframe(table, shp, driver="ESRI Shapefile", encoding="UTF-8")
            if suffix == ".shp":  # the sidecar files (.dbf, .shx, .prj, .cpg) move too
                out = shp.parent
            else:
                with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                    for part in sorted(shp.parent.iterdir()):
                        archive.write(part, part.name)
        else:
            # RFC 7946 output defaults to 7 decimals (~1 cm); 9 keeps round trips within 0.1 mm.
            options = ({"RFC7946": "YES", "COORDINATE_PRECISION": 9}
                       if FORMATS[suffix] == "GeoJSON" else {})
            pyogrio.write_dataframe(frame, out, driver=FORMATS[suffix],
                                    layer_options=options or None)
        for part in sorted(out.iterdir()) if out.is_dir() else [out]:
            os.replace(part, path.with_name(part.name))
