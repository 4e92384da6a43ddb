/* gridmap grid editor (issue 6): draw, reshape, split, merge and retire grids.
 *
 * Every edit is sent to /api/parks/<code>/edits/<operation> with the park's
 * version as If-Match; the answer (new geometries, coverage status) is drawn
 * at once and the layer is then reloaded from /edits/state.  A refused edit
 * shows the server's reason and draws the offending area.  All text goes in
 * with textContent; no inline script, no remote asset.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("ed-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  // No double-click zoom: clicking a vertex twice finishes a line, it must not zoom.
  var map = L.map("ed-map", { maxZoom: 20, minZoom: 3, zoomControl: true, doubleClickZoom: false });
  var boundaryLayer = L.geoJSON(null, {
    interactive: false, pmIgnore: true,
    style: { color: "#1f3a93", weight: 3, fill: true, fillOpacity: 0.03 }
  }).addTo(map);
  var problemLayer = L.geoJSON(null, {
    interactive: false, pmIgnore: true,
    style: function (f) {
      var colour = f.properties.problem === "overlap" ? "#d7191c" : "#ff7f00";
      return { color: colour, weight: 2, dashArray: "4 3", fillColor: colour, fillOpacity: 0.35 };
    }
  }).addTo(map);
  var refusedLayer = L.geoJSON(null, {
    interactive: false, pmIgnore: true,
    style: { color: "#b00020", weight: 3, fillColor: "#b00020", fillOpacity: 0.45 }
  }).addTo(map);
  var gridLayer = L.geoJSON(null, {
    style: function () { return styleFor(false); },
    onEachFeature: function (feature, layer) {
      layer.on("click", function () { onGridClick(feature.properties.code); });
      // Leaflet parses a string tooltip as HTML: give it a text node instead.
      layer.bindTooltip(function () {
        return document.createTextNode(feature.properties.code);
      }, { permanent: false, direction: "center", className: "ed-label" });
    }
  }).addTo(map);

  var state = {
    version: null, grids: {}, layers: {}, selected: [], tool: null,
    busy: 0, loads: 0, ready: false, lastResult: null, lastError: null
  };

  map.pm.setGlobalOptions({ snappable: true, snapDistance: 15, allowSelfIntersection: false });
  map.pm.setLang("zh");

  function styleFor(selected) {
    return selected ? { color: "#e6007e", weight: 4, fillColor: "#e6007e", fillOpacity: 0.25 }
                    : { color: "#2c7bb6", weight: 1.5, fillColor: "#abd9e9", fillOpacity: 0.25 };
  }

  function setText(id, text) { $(id).textContent = text; }

  function hint(text) { setText("ed-hint", text); }

  function showError(text) {
    var box = $("ed-error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function area(m2) {
    return m2 >= 1e4 ? (m2 / 1e4).toFixed(2) + " ha" : Number(m2).toFixed(2) + " m²";
  }

  function showCoverage(cov) {
    var status = $("ed-status");
    if (cov.scope === "too_many_grids") {
      status.textContent = "网格过多，放大后检查覆盖 too many grids in view: zoom in to check coverage";
      status.className = "ed-status";
    } else if (cov.valid) {
      status.textContent = "覆盖有效 coverage valid";
      status.className = "ed-status ed-valid";
    } else {
      var parts = [];
      if (cov.gaps) { parts.push(cov.gaps + " 处空白 gaps (" + area(cov.gap_area_m2) + ")"); }
      if (cov.overlaps) {
        parts.push(cov.overlaps + " 处重叠 overlaps (" + area(cov.overlap_area_m2) + ")");
      }
      if (cov.outside) {
        parts.push(cov.outside + " 处超出园区 outside (" + area(cov.outside_area_m2) + ")");
      }
      status.textContent = "覆盖有问题 coverage problems: " +
        (parts.length ? parts.join("; ") : "invalid grids");
      status.className = "ed-status ed-problems";
    }
  }

  function setSelected(codes) {
    state.selected.forEach(function (c) {
      if (state.layers[c]) { state.layers[c].setStyle(styleFor(false)); }
    });
    state.selected = codes.filter(function (c) { return state.layers[c]; });
    state.selected.forEach(function (c) {
      state.layers[c].setStyle(styleFor(true));
      state.layers[c].bringToFront();
    });
    setText("ed-selected", state.selected.length ? state.selected.join(", ") : "—");
    updateButtons();
  }

  function updateButtons() {
    var n = state.selected.length;
    var apply = $("ed-apply");
    apply.disabled = !((state.tool === "merge" && n >= 2) ||
                       (state.tool === "reshape" && n === 1) ||
                       (state.tool === "retire" && n === 1));
    $("ed-finish").disabled = !(state.tool === "draw" || state.tool === "split");
    Array.prototype.forEach.call(document.querySelectorAll("[data-tool]"), function (b) {
      b.classList.toggle("ed-active", b.getAttribute("data-tool") === state.tool);
    });
  }

  function onGridClick(code) {
    if (state.tool === "draw" || state.tool === "split" && map.pm.globalDrawModeEnabled()) {
      return;  // clicks place vertices while drawing
    }
    if (state.tool === "reshape" && state.selected.length === 1 &&
        state.layers[state.selected[0]].pm.enabled()) {
      return;  // vertex editing in progress
    }
    if (state.tool === "merge") {
      var i = state.selected.indexOf(code);
      var next = state.selected.slice();
      if (i >= 0) { next.splice(i, 1); } else { next.push(code); }
      setSelected(next);
      hint(next.length >= 2 ? "点“提交”合并 Press Apply to merge " + next.join(" + ")
                            : "再选一个相邻网格 Select an adjacent grid");
      return;
    }
    setSelected([code]);
    // Start drawing after this click has finished propagating to the map, or Geoman
    // would take the selecting click as the first vertex.
    if (state.tool === "split") { window.setTimeout(startSplitLine, 0); }
    if (state.tool === "reshape") { window.setTimeout(startReshape, 0); }
    if (state.tool === "retire") { hint("点“提交”退役 Press Apply to retire " + code); }
  }

  function stopDrawing() {
    if (map.pm.globalDrawModeEnabled()) { map.pm.disableDraw(); }
    Object.keys(state.layers).forEach(function (c) {
      if (state.layers[c].pm && state.layers[c].pm.enabled()) { state.layers[c].pm.disable(); }
    });
  }

  function setTool(tool) {
    stopDrawing();
    state.tool = tool;
    showError("");
    refusedLayer.clearLayers();
    if (tool === "draw") {
      setSelected([]);
      map.pm.enableDraw("Polygon", { snappable: $("ed-snapping").checked, finishOnEnter: true });
      hint("在空白处画多边形，点第一个点结束。Draw the new grid over uncovered ground; " +
           "click the first vertex to finish.");
    } else if (tool === "split") {
      if (state.selected.length === 1) { startSplitLine(); } else {
        setSelected([]);
        hint("选择要拆分的网格 Select the grid to split");
      }
    } else if (tool === "merge") {
      setSelected(state.selected);
      hint("选择两个或更多相邻网格 Select two or more adjacent grids");
    } else if (tool === "reshape") {
      if (state.selected.length === 1) { startReshape(); } else {
        setSelected([]);
        hint("选择要修改的网格 Select the grid to reshape");
      }
    } else if (tool === "retire") {
      hint(state.selected.length === 1 ? "点“提交”退役 Press Apply to retire " +
           state.selected[0] : "选择要退役的网格 Select the grid to retire");
    } else {
      setSelected([]);
      hint("点击网格选择。Click a grid to select it.");
    }
    updateButtons();
  }

  function startSplitLine() {
    stopDrawing();
    map.pm.enableDraw("Line", { snappable: $("ed-snapping").checked, finishOnEnter: true });
    hint("画一条穿过 " + state.selected[0] + " 的线，再点最后一个点结束。Draw a line across " +
         state.selected[0] + "; click the last vertex again to finish.");
    updateButtons();
  }

  function startReshape() {
    stopDrawing();
    var layer = state.layers[state.selected[0]];
    layer.pm.enable({ snappable: $("ed-snapping").checked, allowSelfIntersection: false });
    hint("拖动顶点修改 " + state.selected[0] + "，然后点“提交”。Drag the vertices, then press " +
         "Apply; the neighbours give or take the same ground.");
    updateButtons();
  }

  map.on("pm:create", function (e) {
    var geometry = e.layer.toGeoJSON().geometry;
    map.removeLayer(e.layer);
    if (state.tool === "draw" && e.shape === "Polygon") {
      send("draw", { geometry: geometry });
      map.pm.enableDraw("Polygon", { snappable: $("ed-snapping").checked, finishOnEnter: true });
    } else if (state.tool === "split" && e.shape === "Line" && state.selected.length === 1) {
      send("split", { code: state.selected[0], line: geometry,
                      expected_version: state.grids[state.selected[0]].version });
    }
  });

  function apply() {
    var codes = state.selected;
    if (state.tool === "merge" && codes.length >= 2) {
      var expected = {};
      codes.forEach(function (c) { expected[c] = state.grids[c].version; });
      send("merge", { codes: codes, expected_versions: expected });
    } else if (state.tool === "reshape" && codes.length === 1) {
      var layer = state.layers[codes[0]];
      send("reshape", { code: codes[0], geometry: layer.toGeoJSON().geometry,
                        expected_version: state.grids[codes[0]].version });
    } else if (state.tool === "retire" && codes.length === 1) {
      send("retire", { code: codes[0], expected_version: state.grids[codes[0]].version });
    }
  }

  function finish() {
    var shape = map.pm.Draw.getActiveShape();
    var instance = shape && map.pm.Draw[shape];
    if (instance && instance._finishShape) { instance._finishShape(); }
  }

  function describeRefusal(body, status) {
    var err = (body && body.error) || {};
    var details = err.details || {};
    var text = "未执行 Refused (" + status + (err.code ? " " + err.code : "") + "): " +
      (err.message || "unknown error");
    if (typeof details.area_m2 === "number") { text += "\n面积 area: " + area(details.area_m2); }
    if (status === 412 || status === 409) {
      text += "\n已重新加载最新版本 The grids were reloaded; edit again.";
    }
    return text;
  }

  function drawRefused(details) {
    refusedLayer.clearLayers();
    var problems = (details && details.problems) || [];
    problems.forEach(function (p) {
      if (p.geometry) {
        refusedLayer.addData({ type: "Feature", geometry: p.geometry,
                               properties: { problem: p.problem, area_m2: p.area_m2 } });
      }
    });
    if (refusedLayer.getLayers().length) {
      refusedLayer.bringToFront();
      map.fitBounds(refusedLayer.getBounds(), { maxZoom: 18, padding: [40, 40] });
    }
  }

  function send(operation, body) {
    body.reason = $("ed-reason").value.trim() || "editor: " + operation;
    showError("");
    refusedLayer.clearLayers();
    state.busy += 1;
    setText("ed-status", "提交中 Sending " + operation + "…");
    $("ed-status").className = "ed-status";
    // The edit is refused (401) if another account has logged in since this page opened.
    var headers = { "Content-Type": "application/json", "Accept": "application/json",
                    "X-Gridmap-User": encodeURIComponent(config.user) };
    if (state.version !== null) { headers["If-Match"] = '"' + state.version + '"'; }
    return fetch(config.edits + "/" + operation, {
      method: "POST", credentials: "same-origin", headers: headers, body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    }).then(function (r) {
      if (r.ok) {
        state.lastResult = r.data;
        state.lastError = null;
        setSelected([]);
        if (state.tool === "reshape" || state.tool === "retire" || state.tool === "split") {
          setTool(state.tool);  // ready for the next grid
        }
        showResult(r.data);
      } else {
        state.lastError = r.data;
        state.lastResult = null;
        hint("未执行，原因见下 Refused: see why below; the map shows the grids as stored.");
        showError(describeRefusal(r.data, r.status));
        drawRefused(r.data && r.data.error && r.data.error.details);
      }
      return load(!r.ok).then(function () {
        if (!r.ok) { drawRefused(r.data && r.data.error && r.data.error.details); }
      });
    }).catch(function (exc) {
      showError("网络错误 Network error: " + exc);
    }).then(function () {
      state.busy -= 1;
    });
  }

  function showResult(data) {
    // Draw the answer at once: retired grids go, new and reshaped ones come.
    (data.retired || []).forEach(function (code) {
      if (state.layers[code]) { gridLayer.removeLayer(state.layers[code]); }
      delete state.layers[code];
      delete state.grids[code];
    });
    Object.keys(data.grids || {}).forEach(function (code) {
      if (state.layers[code]) { gridLayer.removeLayer(state.layers[code]); }
      var g = data.grids[code];
      gridLayer.addData({ type: "Feature", geometry: g.geometry,
                          properties: { code: code, version: g.version, area_m2: g.area_m2 } });
    });
    indexLayers();
    state.version = data.park_version;
    setText("ed-version", String(data.park_version));
    showCoverage(data.coverage);
    var what = [];
    if (data.added && data.added.length) { what.push("新增 added " + data.added.join(", ")); }
    if (data.reshaped && data.reshaped.length) {
      what.push("修改 reshaped " + data.reshaped.join(", "));
    }
    if (data.retired && data.retired.length) {
      what.push("退役 retired " + data.retired.join(", "));
    }
    hint("编辑 edit " + data.edit + " (" + data.operation + "): " + what.join("; ") +
         (data.warnings && data.warnings.length ? "\n" + data.warnings.join("\n") : ""));
  }

  function indexLayers() {
    state.layers = {};
    gridLayer.eachLayer(function (layer) {
      var p = layer.feature.properties;
      state.layers[p.code] = layer;
      state.grids[p.code] = { version: p.version, area_m2: p.area_m2 };
    });
  }

  // A big park (config.view) loads the grids of the view only, with some margin.
  function stateUrl() {
    if (!config.view) { return config.state; }
    var b = map.getBounds().pad(0.2);
    var clamp = function (v, lo, hi) { return Math.min(hi, Math.max(lo, v)); };
    return config.state + "?bbox=" + [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
                                      clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)]
      .map(function (v) { return v.toFixed(6); }).join(",");
  }

  function load(keepStatus) {
    state.loads += 1;
    return fetch(stateUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (data) {
        var fit = !state.ready && !config.view;
        state.version = data.park_version;
        setText("ed-version", String(data.park_version));
        boundaryLayer.clearLayers().addData(data.boundary);
        problemLayer.clearLayers().addData(data.problems);
        gridLayer.clearLayers();
        state.grids = {};
        gridLayer.addData(data.grids);
        indexLayers();
        var keep = state.selected.filter(function (c) { return state.layers[c]; });
        state.selected = [];
        setSelected(keep);
        if (!keepStatus || state.lastError) { showCoverage(data.coverage); }
        if (state.lastError) {
          $("ed-status").textContent += " · 上次编辑未执行 last edit refused";
        }
        if (fit) { map.fitBounds(boundaryLayer.getBounds()); }
        state.ready = true;
        return history();
      }).catch(function (exc) {
        showError("加载失败 Loading failed: " + exc.message);
      }).then(function () {
        state.loads -= 1;
      });
  }

  function history() {
    return fetch(config.edits, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : { edits: [] };
    }).then(function (data) {
      var list = $("ed-history");
      list.replaceChildren();
      data.edits.slice(0, 10).forEach(function (e) {
        var li = document.createElement("li");
        li.textContent = "#" + e.id + " " + e.operation + " · " + e.actor + " · " +
          e.grids.join(", ") + (e.reason ? " — " + e.reason : "");
        list.appendChild(li);
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-tool]"), function (button) {
    button.addEventListener("click", function () {
      var tool = button.getAttribute("data-tool");
      setTool(state.tool === tool ? null : tool);
    });
  });
  $("ed-apply").addEventListener("click", apply);
  $("ed-finish").addEventListener("click", finish);
  $("ed-cancel").addEventListener("click", function () {
    stopDrawing();
    load(false);
    setTool(null);
  });

  if (config.view) {
    map.setView(config.view.center, config.view.zoom);
    // Panning or zooming a big park loads the new view's grids, unless an edit is under way.
    map.on("moveend", function () {
      if (state.ready && !state.tool && state.busy === 0 && state.loads === 0) { load(true); }
    });
  }

  window.gridEditor = {
    map: map, state: state, config: config, reload: load, send: send, refused: refusedLayer,
    idle: function () { return state.ready && state.busy === 0 && state.loads === 0; }
  };
  load(false);
}());
