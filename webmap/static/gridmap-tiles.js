/* gridmap park map, tiled path: for parks above GRIDMAP_MAP_TILE_THRESHOLD grids the grid
 * and sub-grid layers are drawn from Mapbox vector tiles (/api/parks/<code>/tiles/grids/
 * {z}/{x}/{y}.mvt) with protomaps-leaflet on canvas, instead of bbox GeoJSON.
 *
 * A tile carries each grid's code, name, level, parent and open/overdue hazard counts, enough
 * for the choropleth.  A click finds the grid under the pointer in the tiles already drawn
 * and asks the API for that one grid (authoritative geometry, staff, enterprises), which
 * outlines the selection and fills the popup that gridmap.js builds with textContent.
 * Runs after gridmap.js (both wait for DOMContentLoaded), which exposes its helpers on
 * window.gridmap.
 */
document.addEventListener('DOMContentLoaded', function () {
  'use strict';

  var cfg = JSON.parse(document.getElementById('gridmap-config').textContent);
  if (!cfg.tiles) { return; }
  var state = window.gridmap;
  var map = state.map;
  var groups = state.groups;
  var P = window.protomapsL;
  var tiles = {layers: {}, loading: 0, loaded: 0, errors: 0, selected: null};
  state.tiles = tiles;

  var LEVELS = {grids: 1, subgrids: 2};

  function rules(level) {
    if (level === 1) {
      return [
        {dataLayer: 'grids', symbolizer: new P.PolygonSymbolizer({
          fill: function (z, f) { return state.colour(f.props.open_hazards); },
          opacity: 0.6, stroke: '#555', width: 1})},
        // grids with overdue hazards: a thick red dashed outline, as on the GeoJSON path
        {dataLayer: 'grids', filter: function (z, f) { return f.props.overdue_hazards > 0; },
         symbolizer: new P.LineSymbolizer({color: '#d7191c', width: 4, dash: [8, 4]})}
      ];
    }
    return [{dataLayer: 'grids', symbolizer: new P.PolygonSymbolizer({
      fill: '#2c7bb6', opacity: 0.05})},
            {dataLayer: 'grids', symbolizer: new P.LineSymbolizer({
              color: '#2c7bb6', width: 1.5, dash: [4, 3]})}];
  }

  function makeLayer(key) {
    var level = LEVELS[key];
    var b = cfg.bbox;
    var layer = P.leafletLayer({
      url: cfg.tiles.url + (level > 1 ? '?level=' + level : ''),
      paintRules: rules(level), labelRules: [], attribution: '',
      maxDataZoom: cfg.tiles.maxDataZoom, minZoom: cfg.tiles.minZoom, maxZoom: 20,
      bounds: [[b[1], b[0]], [b[3], b[2]]], zIndex: 10 + level
    });
    // Leaflet's zoom and pan steps create every new tile in one task, and each tile's fetch()
    // starts inside it; start each fetch in a task of its own so that step stays short.
    var source = layer.views.get('').tileCache.source;
    var get = source.get;
    source.get = function (coords, size) {
      return new Promise(function (resolve) { setTimeout(resolve, 0); })
        .then(function () { return get.call(source, coords, size); });
    };
    // a layer removed while loading never fires 'load': count busy layers, not events
    var busy = function (on) {
      return function () { layer.gmBusy = on; countBusy(); };
    };
    layer.on('loading', busy(true));
    layer.on('load remove', busy(false));
    layer.on('tileload', function () { tiles.loaded += 1; });
    layer.on('tileerror', function () { tiles.errors += 1; });
    return layer;
  }

  function countBusy() {
    tiles.loading = Object.keys(tiles.layers).filter(function (k) {
      return tiles.layers[k].gmBusy && map.hasLayer(tiles.layers[k]);
    }).length;
  }

  function addLayers() {
    Object.keys(LEVELS).forEach(function (key) {
      if (tiles.layers[key]) { groups[key].removeLayer(tiles.layers[key]); }
      tiles.layers[key] = makeLayer(key);
      groups[key].addLayer(tiles.layers[key]);
    });
    countBusy();
  }

  // After a hazard is logged or moved the tiles' ETag changes: new layers refetch
  // (the browser revalidates every tile, Cache-Control: no-cache).
  state.reloadTiles = function () { addLayers(); };

  function zoomHint() {
    if (map.getZoom() < cfg.tiles.minZoom) {
      state.status('请放大查看网格 Zoom in to see the grids');
    } else if (tiles.hinted) {
      state.status('');
    }
    tiles.hinted = map.getZoom() < cfg.tiles.minZoom;
  }

  var selection = L.layerGroup().addTo(map);

  function select(feature, latlng) {
    var p = feature.properties;
    // the API's grid summary lists hidden units as objects; the popup wants their names
    p.hidden_units = (p.hidden_units || []).map(function (u) { return u.name; });
    selection.clearLayers();
    L.geoJSON(feature, {interactive: false, style: {color: '#00bcd4', weight: 4, fill: false}})
      .addTo(selection);
    tiles.selected = p.code;
    var at = latlng || selection.getLayers()[0].getBounds().getCenter();
    map.openPopup(state.gridPopup(p), at, {maxWidth: 360});  // a DOM node, never a string
  }

  function showGrid(code, latlng) {
    return state.fetchJSON(cfg.api + '/grids/' + encodeURIComponent(code))
      .then(function (feature) { select(feature, latlng); }, function () {});
  }
  state.showGrid = function (code) { return showGrid(code, null); };
  state.openGridPopup = function (code) { showGrid(code, null); return true; };

  map.on('popupclose', function (ev) {
    if (ev.popup.getContent() && ev.popup.getContent().dataset &&
        ev.popup.getContent().dataset.grid === tiles.selected) {
      selection.clearLayers();
      tiles.selected = null;
    }
  });

  // The grid under a click: the deepest level shown, found in the tiles already drawn.
  function gridAt(latlng) {
    var keys = ['subgrids', 'grids'];
    for (var i = 0; i < keys.length; i++) {
      var layer = tiles.layers[keys[i]];
      if (!layer || !map.hasLayer(layer)) { continue; }
      var picked = layer.queryTileFeaturesDebug(latlng.lng, latlng.lat).get('') || [];
      if (picked.length) { return picked[picked.length - 1].feature.props.code; }
    }
    return null;
  }

  map.on('click', function (ev) {
    if (state.log && state.log.active) { return; }  // log mode picks a point instead
    var code = gridAt(ev.latlng);
    if (code) { showGrid(code, ev.latlng); }
  });

  map.on('zoomend', zoomHint);
  addLayers();
  zoomHint();
});
