"""Grid edits on the database: each one a single, versioned, coverage-checked transaction.

Every public function here follows one recipe (:func:`_run`):

1. lock the park: ``SELECT ... FOR UPDATE`` on its row in PostgreSQL; on
   SQLite the write transaction (``BEGIN IMMEDIATE``, see
   :func:`geodata.storage.session_scope` with ``write=True``) already holds
   the database's write lock;
2. check versions: ``if_match`` (the park's version, which every edit bumps:
   the ``ETag`` of its grid layer) → 412 ``precondition_failed``;
   ``expected_version`` (a grid's version, or ``{code: version}``) → 409
   ``stale_version`` for an int (a version in the request body), 412 for a
   string (an ``If-Match`` ETag of the grid, ``'"3"'`` or ``'W/"3"'``);
3. compute the new geometries with :mod:`geodata.editing` in the park's
   metric CRS, project them back to EPSG:4326 and snap-round them into one
   noded arrangement per parent (:func:`geodata.arrangement.tile`, a 1e-9°
   grid): neighbours share their vertices exactly, no grid gains a part
   under 1 m², and stored vertices come back bit-identical;
4. run the coverage check on the park before and after; refuse with 422 when
   the edit leaves a *new* gap (``would_leave_gap``), overlap
   (``grid_overlap``), part outside the park or parent (``outside_park``) or
   invalid grid (``invalid_geometry``), with the area in m² and the
   geometry of each problem, unless ``allow_problems`` (then they are
   recorded in the edit);
5. write: changed grids in place (their ``version`` goes up), retired grids
   keep their row with ``active_to`` set, new grids get new codes continuing
   the park's sequence (:func:`geodata.gridcodes.grid_code`, reading order),
   lineage rows say which grids a new grid came from, one
   :class:`~geodata.models.GridEdit` with the before and after WKB of every
   touched grid; staff of a retired grid move to the grid that took most of
   its ground; enterprises are re-resolved (:func:`sites.reassign_grids`) and
   open hazards re-located (:func:`hazards.locate`).

Any error leaves the database unchanged: the caller's transaction rolls back.

Geometries passed in and returned are EPSG:4326 shapely objects; areas are m²
in the park's metric CRS; ``tolerance_m`` and ``snap_m`` are metres.

Public API (all take ``session, park`` first and ``actor``, ``reason``,
``if_match`` as keywords and return an :class:`EditOutcome`):
:func:`draw_grid`, :func:`reshape_grid`, :func:`split_grid`,
:func:`merge_grids`, :func:`retire_grid`, :func:`absorb_slivers`,
:func:`restore_grid`, :func:`restore_park`, :func:`apply_layer`; and the
read-only :func:`park_history`, :func:`grid_history`, :func:`grids_at`.
"""

from geodata.services.edits.absorb import absorb_slivers
from geodata.services.edits.common import EditOutcome, Preview, SNAP_M, TOLERANCE_M
from geodata.services.edits.draw import draw_grid
from geodata.services.edits.history import (count_edits, grid_history, grids_at, lineage,
                                            park_history, restore_grid, restore_park)
from geodata.services.edits.layers import adopt_proposal, apply_layer
from geodata.services.edits.merge import merge_grids
from geodata.services.edits.recipe import coverage_summary
from geodata.services.edits.reshape import reshape_grid
from geodata.services.edits.retire import retire_grid
from geodata.services.edits.split import split_grid

__all__ = ["EditOutcome", "Preview", "SNAP_M", "TOLERANCE_M", "absorb_slivers", "adopt_proposal",
           "apply_layer", "count_edits", "coverage_summary", "draw_grid", "grid_history",
           "grids_at", "lineage", "merge_grids", "park_history", "reshape_grid", "restore_grid",
           "restore_park", "retire_grid", "split_grid"]
