"""File import and export for every layer, as one transaction each.

An import reads, parses and validates the whole file first, with no
database lock held (a long parse would otherwise keep SpatiaLite's single
writer lock and turn other writers away with 503s).  Then one short write
transaction takes the park's lock, re-checks what depends on stored data
(duplicate codes, overlaps with stored grids, points inside the park) and
writes.  Any error at any feature rolls everything back, and ``dry_run``
rolls back a successful one too, so the database is exactly as it was.
"""

from dataclasses import dataclass, field

import sqlalchemy as sa

from geodata.errors import ValidationError
from geodata.formats import read_layer, write_layer
from geodata.models import Park
from geodata.services.grids import grids_frame, import_grids
from geodata.services.hazards import hazards_frame, import_hazards
from geodata.services.parks import get_park, import_parks, parks_frame
from geodata.services.sites import enterprises_frame, import_enterprises
from geodata.services.staff import import_staff, staff_frame
from geodata.storage import refresh_statistics, session_scope
from geodata.vocabulary import LAYERS  # noqa: F401  (re-exported)

_IMPORTERS = {"grids": import_grids, "enterprises": import_enterprises, "staff": import_staff,
              "hazards": import_hazards}
_EXPORTERS = {"grids": grids_frame, "enterprises": enterprises_frame, "staff": staff_frame,
              "hazards": hazards_frame}


@dataclass
class ImportReport:
    """What an import did (or would do, on a dry run)."""

    layer: str
    file: str
    park: str | None
    count: int
    dry_run: bool
    warnings: list = field(default_factory=list)

    def summary(self):
        """One line for the CLI."""
        verb = "would import" if self.dry_run else "imported"
        where = f" into park {self.park}" if self.park else ""
        return f"{verb} {self.count} {self.layer} from {self.file}{where}"


def resolve_park(session, code):
    """Return the park named by ``code``, or the only park when ``code`` is None."""
    if code:
        return get_park(session, code)
    codes = session.execute(sa.select(Park.code).limit(2)).scalars().all()
    if len(codes) != 1:
        raise ValidationError("name the park with --park CODE" + (
            "" if codes else " (no parks stored yet: import parks first)"),
            code="park_required")
    return get_park(session, codes[0])


def import_file(engine, layer, path, *, park_code=None, crs=None, dry_run=False,
                max_features=200_000, max_vertices=20_000, max_file_mb=100, before_write=None):
    """Import ``path`` into ``layer`` in one transaction; return an :class:`ImportReport`.

    The file is read and its geometries validated for ``layer`` before the
    write transaction; ``before_write``, if given, is called between the two.
    """
    if layer != "parks":
        # Say which park is meant before reading a possibly large file.
        with session_scope(engine) as session:
            park_code = resolve_park(session, park_code).code
    geometry = layer != "staff"
    frame, warnings = read_layer(path, crs=crs, geometry=geometry,
                                 layer=layer if geometry else None, max_features=max_features,
                                 max_vertices=max_vertices, max_file_mb=max_file_mb)
    options = {"file": str(path), "checked": True} if geometry else {"file": str(path)}
    if before_write is not None:
        before_write()
    with session_scope(engine, write=True) as session:
        if layer == "parks":
            rows, more = import_parks(session, frame, **options)
        else:
            park = get_park(session, park_code, lock=True)
            rows, more = _IMPORTERS[layer](session, park, frame, **options)
        report = ImportReport(layer, str(path), park_code if layer != "parks" else None,
                              len(rows), dry_run, sorted(set(warnings) | set(more)))
        if dry_run:
            session.rollback()
    if not dry_run and len(rows) >= 1000:  # a bulk load: the planner needs to know
        refresh_statistics(engine)
    return report


def export_file(engine, layer, path, *, park_code=None):
    """Write ``layer`` (of one park, or all parks for ``parks``) to ``path``; return the count."""
    with session_scope(engine) as session:
        if layer == "parks":
            frame = parks_frame(session, park_code)
        else:
            frame = _EXPORTERS[layer](session, resolve_park(session, park_code))
    write_layer(frame, path)
    return len(frame)
