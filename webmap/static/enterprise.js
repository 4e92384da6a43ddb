/* gridmap enterprise file (一企一档): the site on a small Leaflet map.
 *
 * Reads geometries from the page's JSON block (#ent-config): the site, its
 * grid, its host's site or the hidden units inside it, and its hazards.  No
 * tiles, no popups, no text from the data: nothing here can run user text.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("ent-config").textContent);
  var map = L.map("ent-map", { maxZoom: 20, minZoom: 3, preferCanvas: true });
  var bounds = L.latLngBounds([]);

  function add(geometry, style) {
    if (!geometry) { return null; }
    var layer = L.geoJSON(geometry, {
      interactive: false,
      style: style,
      pointToLayer: function (feature, latlng) {
        return L.circleMarker(latlng, Object.assign({ radius: 7 }, style));
      }
    }).addTo(map);
    bounds.extend(layer.getBounds());
    return layer;
  }

  add(config.grid, { color: "#1f3a93", weight: 2, fillColor: "#1f3a93", fillOpacity: 0.06 });
  add(config.host, { color: "#c51b8a", weight: 2, dashArray: "5 4", fillOpacity: 0.05 });
  config.units.forEach(function (unit) {
    add(unit, { color: "#c51b8a", weight: 2, fillColor: "#c51b8a", fillOpacity: 0.25 });
  });
  var site = add(config.site, { color: "#d7301f", weight: 3, fillColor: "#d7301f",
                                fillOpacity: 0.3 });
  config.hazards.forEach(function (h) {
    if (!h.open) { return; }
    L.circleMarker([h.lat, h.lon], {
      radius: 6, color: h.overdue ? "#67000d" : "#7f2704", weight: h.overdue ? 3 : 1,
      fillColor: "#fd8d3c", fillOpacity: 0.9, interactive: false
    }).addTo(map);
  });
  if (bounds.isValid()) {
    map.fitBounds(bounds.pad(0.15));
  } else {
    map.setView([0, 0], 3);
  }
  // For tests and people alike: the map has drawn its site.
  document.getElementById("ent-map").dataset.ready = site ? "site" : "empty";
})();
