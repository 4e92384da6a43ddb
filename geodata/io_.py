"""Read and write layers as GeoJSON, GeoPackage, zipped Shapefile and CSV.

Reading returns a GeoDataFrame in EPSG:4326 whatever the file's CRS.
GeoJSON is parsed here (strictly, see :mod:`geodata.geometry`) rather than
by GDAL, so that unclosed rings, NaN and truncation are caught with the
feature index; it is CRS84 unless a legacy ``crs`` member says otherwise
(RFC 7946).  Other formats go through pyogrio.  A file without a CRS is
refused unless the caller names one (``--crs``); CSV with lon/lat columns
is WGS 84 degrees by definition of those columns.
"""

import os
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from geodata.crs import STORAGE_SRID
from geodata.errors import BadRequestError, FeatureError, PayloadTooLargeError, ValidationError
from geodata.geometry import geometry_from_geojson, parse_json

FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile",
           ".zip": "ESRI Shapefile", ".csv": "CSV"}
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
MAX_ZIP_BYTES = 500 * 2**20


def _suffix(path):
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValidationError(
            f"{path}: unsupported file type {suffix or '(none)'}; use one of "
            f"{', '.join(sorted(FORMATS))}", code="unsupported_format", details={"file": str(path)})
    return suffix


def parse_crs(value, source=None):
    """Return a pyproj CRS for user input such as ``EPSG:3857``, ``4490`` or WKT."""
    try:
        return CRS.from_user_input(int(value) if str(value).isdigit() else value)
    except CRSError:
        where = f"{source}: " if source else ""
        raise ValidationError(f"{where}unknown CRS {value!r}", code="unknown_crs",
                              details={"file": source, "crs": str(value)}) from None


def read_layer(path, *, crs=None, geometry=True, max_features=200_000, max_vertices=20_000):
    """Read a file into a GeoDataFrame in EPSG:4326 (or a DataFrame without geometry).

    Parameters
    ----------
    path : str or Path
        ``.geojson``/``.json``, ``.gpkg``, ``.shp``, ``.zip`` (one shapefile),
        or ``.csv`` (a WKT column, or lon/lat columns).
    crs : str, optional
        CRS to assume when the file declares none; a declared CRS wins.
    geometry : bool
        False for attribute-only layers (grid staff).

    Returns
    -------
    (GeoDataFrame or DataFrame, list of str)
        The features and non-fatal warnings.

    Raises
    ------
    GridmapError
        ``invalid_json``, ``missing_crs``, ``unknown_crs``, ``empty_file``,
        ``unsupported_format``, ``payload_too_large`` or a ``FeatureError``.
    """
    path = str(path)
    suffix = _suffix(path)
    if not os.path.isfile(path):
        raise ValidationError(f"{path}: no such file", code="file_not_found",
                              details={"file": path})
    warnings = set()
    if suffix in (".geojson", ".json"):
        frame, declared = _read_geojson(path, max_features, max_vertices, warnings)
    elif suffix == ".csv":
        frame, declared = _read_csv(path, geometry, crs)
    else:
        if suffix == ".zip":
            path = _zip_shapefile_path(path)
        try:
            frame = pyogrio.read_dataframe(path, read_geometry=geometry)
        except pyogrio.errors.DataSourceError as exc:
            raise ValidationError(f"{path}: cannot be read as {FORMATS[suffix]} ({exc})",
                                  code="unreadable_file", details={"file": path}) from None
        declared = getattr(frame, "crs", None)
        if FORMATS[suffix] == "ESRI Shapefile":
            frame = frame.rename(columns={v: k for k, v in SHAPEFILE_NAMES.items()})
    if len(frame) == 0:
        raise ValidationError(f"{path}: the file has no features", code="empty_file",
                              details={"file": path})
    if len(frame) > max_features:
        raise PayloadTooLargeError(f"{path}: {len(frame)} features exceed the cap of "
                                   f"{max_features}", details={"file": path})
    if not geometry or "geometry" not in frame:
        return pd.DataFrame(frame.drop(columns="geometry", errors="ignore")), sorted(warnings)
    if declared is None:
        if crs is None:
            raise ValidationError(
                f"{path}: the file declares no CRS; give one with --crs (e.g. --crs EPSG:4490)",
                code="missing_crs", details={"file": path})
        declared = parse_crs(crs, path)
    gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs=declared)
    epsg = gdf.crs.to_epsg()
    if epsg == 4490:
        # CGCS2000 geographic coordinates equal WGS 84 ones to a few centimetres.
        gdf = gdf.set_crs(STORAGE_SRID, allow_override=True)
    elif epsg != STORAGE_SRID:
        gdf = gdf.to_crs(STORAGE_SRID)
    return gdf, sorted(warnings)


def _read_geojson(path, max_features, max_vertices, warnings):
    with open(path, "rb") as fh:
        text = fh.read()
    if not text.strip():
        raise ValidationError(f"{path}: the file is empty", code="empty_file",
                              details={"file": path})
    doc = parse_json(text, source=path)
    if not isinstance(doc, dict) or doc.get("type") not in ("FeatureCollection", "Feature"):
        raise FeatureError("not a GeoJSON FeatureCollection or Feature", code="invalid_geojson",
                           file=path)
    features = [doc] if doc["type"] == "Feature" else doc.get("features")
    if not isinstance(features, list):
        raise FeatureError("'features' must be an array", code="invalid_geojson", file=path)
    if len(features) > max_features:
        raise PayloadTooLargeError(f"{path}: {len(features)} features exceed the cap of "
                                   f"{max_features}", details={"file": path})
    rows, geoms = [], []
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise FeatureError("not a GeoJSON Feature", code="invalid_geojson", file=path,
                               index=i)
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise FeatureError("'properties' must be an object", code="invalid_geojson",
                               file=path, index=i, field="properties")
        rows.append(props)
        geoms.append(geometry_from_geojson(feature.get("geometry"), index=i, file=path,
                                           max_vertices=max_vertices, warnings=warnings))
    declared = CRS.from_epsg(STORAGE_SRID)
    legacy = (doc.get("crs") or {}).get("properties", {}).get("name")
    if legacy:
        declared = parse_crs(legacy.replace("urn:ogc:def:crs:", "").replace("::", ":"), path)
        if declared.equals(CRS.from_user_input("OGC:CRS84")):
            declared = CRS.from_epsg(STORAGE_SRID)
    frame = pd.DataFrame(rows)
    frame["geometry"] = np.array(geoms, dtype=object) if geoms else []
    return frame, declared


def _read_csv(path, geometry, crs):
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(f"{path}: not a readable UTF-8 CSV ({exc})", code="unreadable_file",
                              details={"file": path}) from None
    frame = frame.replace({"": None})
    if not geometry:
        return frame, None
    lower = {c.lower(): c for c in frame.columns}
    for lon, lat in LONLAT_COLUMNS:
        if lon in lower and lat in lower:
            xs = pd.to_numeric(frame[lower[lon]], errors="coerce")
            ys = pd.to_numeric(frame[lower[lat]], errors="coerce")
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
            geoms = shapely.from_wkt(wkt.to_numpy(), on_invalid="ignore")
            bad = np.flatnonzero(shapely.is_missing(geoms) & wkt.notna().to_numpy())
            if len(bad):
                raise FeatureError("not valid WKT", code="invalid_geometry", file=path,
                                   index=int(bad[0]), field=name)
            frame["geometry"] = geoms
            return frame, parse_crs(crs, path) if crs else None
    raise ValidationError(f"{path}: a CSV needs a WKT column ({', '.join(WKT_COLUMNS)}) or "
                          "lon/lat columns", code="missing_geometry", details={"file": path})


def _zip_shapefile_path(path):
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
    if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise PayloadTooLargeError(f"{path}: archive too large (over {MAX_ZIP_MEMBERS} members "
                                   f"or {MAX_ZIP_BYTES // 2**20} MB uncompressed)",
                                   details={"file": path})
    for m in members:
        name = m.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or (
                m.external_attr >> 16) & 0o170000 == 0o120000:
            raise ValidationError(f"{path}: unsafe archive member {name!r}",
                                  code="unsafe_archive", details={"file": path})
    shps = [m.filename for m in members if m.filename.lower().endswith(".shp")]
    if len(shps) != 1:
        raise ValidationError(f"{path}: the archive must hold exactly one .shp, found "
                              f"{len(shps)}", code="unreadable_file", details={"file": path})
    return f"/vsizip/{os.path.abspath(path)}/{shps[0]}"


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


def write_layer(frame, path):
    """Write a (Geo)DataFrame to ``path``; the format follows the extension.

    GeoJSON is written per RFC 7946 (EPSG:4326, no ``crs`` member); a
    ``.zip`` holds one Shapefile with its ``.prj``; CSV gets a ``wkt``
    column.  Files QGIS opens as they are.
    """
    path = Path(path)
    suffix = _suffix(path)
    if isinstance(frame, gpd.GeoDataFrame):
        _refuse_collections(frame, path)
    if suffix == ".csv":
        out = pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
        if isinstance(frame, gpd.GeoDataFrame):
            out["wkt"] = shapely.to_wkt(frame.geometry.to_numpy(), rounding_precision=-1)
        out.to_csv(path, index=False, encoding="utf-8")
        return
    if not isinstance(frame, gpd.GeoDataFrame):
        raise BadRequestError(f"{path}: a layer without geometry can only be written as .csv",
                              code="unsupported_format")
    if suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            shp = Path(tmp) / (path.stem + ".shp")
            pyogrio.write_dataframe(frame.rename(columns=SHAPEFILE_NAMES), shp,
                                    driver="ESRI Shapefile", encoding="UTF-8")
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for part in sorted(Path(tmp).iterdir()):
                    archive.write(part, part.name)
        return
    if path.exists():
        path.unlink()
    # RFC 7946 output defaults to 7 decimals (~1 cm); 9 keeps round trips within 0.1 mm.
    options = ({"RFC7946": "YES", "COORDINATE_PRECISION": 9}
               if FORMATS[suffix] == "GeoJSON" else {})
    pyogrio.write_dataframe(frame, path, driver=FORMATS[suffix], layer_options=options or None)
