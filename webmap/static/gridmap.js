/* gridmap park map: fills folium's empty layers from the JSON API.
 *
 * Grids and sub-grids are fetched for the visible bbox, simplified for the
 * zoom level, each time the map stops moving, so a park of 10 000 grids is
 * never sent whole.  Every popup is built with DOM nodes and textContent:
 * enterprise names, hazard notes and staff names are user text and must
 * never be parsed as HTML.  Runs after folium's inline map script
 * (DOMContentLoaded), whose top-level variables name the map and its layers.
 */
document.addEventListener('DOMContentLoaded', function () {
  'use strict';

  var cfg = JSON.parse(document.getElementById('gridmap-config').textContent);
  var state = {ready: false, loads: 0, generation: 0, grids: {}, subgrids: {}, errors: [],
               matched: {}, returned: {}, pendingPopup: null};
  window.gridmap = state;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function link(href, text) {
    var a = el('a', text);
    a.href = href;
    return a;
  }

  function row(table, label, value, field) {
    var tr = el('tr');
    tr.appendChild(el('th', label));
    var td = el('td');
    if (value instanceof Node) { td.appendChild(value); } else { td.textContent = String(value); }
    if (field) { td.dataset.field = field; }
    tr.appendChild(td);
    table.appendChild(tr);
  }

  function colour(n) {
    var c = cfg.classes[0][1];
    cfg.classes.forEach(function (k) { if (n >= k[0]) { c = k[1]; } });
    return c;
  }

  function gridPage(code) {
    return cfg.gridPage.replace('__GRID__', encodeURIComponent(code));
  }

  function area(m2) {
    return m2 >= 1e5 ? (m2 / 1e6).toFixed(3) + ' km²' : Math.round(m2) + ' m²';
  }

  function gridPopup(p) {
    var box = el('div', null, 'gm-popup gm-grid-popup');
    box.dataset.grid = p.code;
    box.appendChild(el('h3', p.code + ' ' + p.name));
    var t = el('table');
    row(t, '编号 Code', p.code, 'code');
    row(t, '名称 Name', p.name, 'name');
    row(t, '面积 Area', area(p.area_m2), 'area');
    t.lastChild.lastChild.dataset.value = p.area_m2;
    row(t, '企业 Enterprises', p.enterprise_count, 'enterprise_count');
    row(t, '厂中厂 Hidden units', p.hidden_count, 'hidden_count');
    row(t, '未销号隐患 Open hazards', link(gridPage(p.code) + '#hazards', p.open_hazards),
        'open_hazards');
    row(t, '逾期 Overdue', link(gridPage(p.code) + '#hazards', p.overdue_hazards),
        'overdue_hazards');
    box.appendChild(t);
    var staff = el('ul', null, 'gm-staff');
    (p.staff || []).forEach(function (s) {
      var li = el('li');
      li.appendChild(el('span', s.title + ' ', 'gm-role'));
      li.appendChild(el('span', s.name, 'gm-name'));
      li.appendChild(document.createTextNode(' '));
      li.appendChild(link('tel:' + s.phone, s.phone));
      staff.appendChild(li);
    });
    box.appendChild(el('strong', '网格员 Staff'));
    box.appendChild(staff);
    if ((p.hidden_units || []).length) {
      box.appendChild(el('strong', '厂中厂 Hidden units'));
      var hidden = el('ul', null, 'gm-hidden-list');
      p.hidden_units.forEach(function (name) { hidden.appendChild(el('li', name)); });
      box.appendChild(hidden);
    }
    var more = link(gridPage(p.code), '网格详情 Grid page →');
    more.className = 'gm-grid-link';
    box.appendChild(more);
    return box;
  }

  function hazardPopup(p) {
    var box = el('div', null, 'gm-popup gm-hazard-popup');
    box.dataset.hazard = p.code;
    box.appendChild(el('h3', p.code));
    var t = el('table');
    row(t, '类别 Category', p.category, 'category');
    row(t, '等级 Level', p.level === 'major' ? '重大 major' : '一般 general', 'level');
    row(t, '状态 Status', statusText(p.status, p.overdue), 'status');
    row(t, '期限 Deadline', p.deadline || '—', 'deadline');
    row(t, '逾期 Overdue', p.overdue ? '是 yes' : '否 no', 'overdue');
    row(t, '分级 Escalation', escalationText(p.escalation), 'escalation');
    row(t, '企业 Enterprise', p.enterprise || '—', 'enterprise');
    row(t, '描述 Note', p.description || '', 'description');
    if (p.grid) { row(t, '网格 Grid', link(gridPage(p.grid) + '#hazards', p.grid), 'grid'); }
    box.appendChild(t);
    if (cfg.user && p.id) {
      var shots = el('div', null, 'gm-hz-photos');
      box.appendChild(shots);
      loadPhotos(shots, p.id, p.code);
      var actions = el('div', null, 'gm-hz-actions');
      actions.dataset.hazardId = p.id;
      box.appendChild(actions);
      loadActions(box, p.id, '');
    }
    return box;
  }

  // The hazard's photos as thumbnails that open the full photo; the server decides
  // which the user may see (a grid member gets 403 for another grid's hazard).
  function loadPhotos(div, id, code) {
    state.loads += 1;
    return fetch(cfg.hazardApi + id + '/photos', {headers: {Accept: 'application/json'},
                                                  credentials: 'same-origin'})
      .then(function (r) {
        return r.json().then(function (body) {
          state.loads -= 1;
          div.replaceChildren();
          if (!r.ok) {
            div.appendChild(el('p', r.status === 403 ? '无权查看照片 No access to the photos'
                                                     : apiError(r, body), 'gm-hz-none'));
            return;
          }
          (body.photos || []).forEach(function (ph, i) {
            var label = (cfg.photoTags[ph.tag] || '') + ' ' + ph.tag + ' ' + (i + 1);
            var a = link(ph.url);
            a.className = 'gm-thumb';
            a.target = '_blank';
            a.rel = 'noopener';
            a.dataset.photo = ph.id;
            a.dataset.tag = ph.tag;
            var img = document.createElement('img');
            img.setAttribute('alt', code + ' ' + label);
            img.src = ph.thumbnail_url;
            a.appendChild(img);
            div.appendChild(a);
          });
        });
      })
      .catch(function (err) { state.loads = Math.max(0, state.loads - 1); status(String(err)); });
  }

  function statusText(status, overdue) {
    return (cfg.states[status] || '') + ' ' + status + (overdue ? ' (逾期 overdue)' : '');
  }

  function escalationText(level) {
    return level ? (cfg.escalations[level] || '') + ' ' + level : '—';
  }

  function sitePopup(p) {
    var box = el('div', null, 'gm-popup gm-site-popup');
    box.appendChild(el('h3', p.name));
    var t = el('table');
    row(t, '信用代码 Credit code', p.credit_code, 'credit_code');
    row(t, '行业 Industry', p.industry || '—', 'industry');
    row(t, '网格 Grid', p.grid || '—', 'grid');
    if (p.hidden) {
      row(t, '厂中厂 Hidden unit', '位于 inside ' + (p.host || '?'), 'host');
      row(t, '原因 Reason', p.reason, 'reason');
    }
    box.appendChild(t);
    if (p.credit_code) {  // 一企一档: the enterprise's file (needs a login)
      var file = link(cfg.enterprisePage.replace('__CODE__', encodeURIComponent(p.credit_code)),
                      '一企一档 Enterprise file →');
      file.className = 'gm-enterprise-link';
      box.appendChild(file);
    }
    return box;
  }

  function status(text) {
    document.getElementById('gm-status').textContent = text || '';
  }

  function fetchJSON(url) {
    state.loads += 1;
    return fetch(url, {headers: {Accept: 'application/json'}, credentials: 'same-origin'})
      .then(function (r) {
        if (!r.ok) { throw new Error(url + ' → HTTP ' + r.status); }
        return r.json();
      })
      .then(function (data) { state.loads -= 1; return data; },
            function (err) { state.loads -= 1; state.errors.push(String(err)); status(String(err)); throw err; });
  }

  var map = window[cfg.map];
  var groups = {};
  Object.keys(cfg.layers).forEach(function (k) { groups[k] = window[cfg.layers[k]]; });
  // one answer of the API holds at most cfg.pageMax rows (GRIDMAP_API_PAGE_MAX)
  var GRID_LIMIT = Math.min(4000, cfg.pageMax);

  function bboxParam() {
    var b = map.getBounds().pad(0.2);
    var clamp = function (v, lo, hi) { return Math.min(hi, Math.max(lo, v)); };
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
            clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)]
      .map(function (v) { return v.toFixed(6); }).join(',');
  }

  function openGridPopup(layer) {
    var p = layer.feature.properties;
    layer.openPopup(L.latLng(p.anchor[1], p.anchor[0]));
  }

  function renderGrids(key, fc, style) {
    // a popup open on a grid survives the reload that its own auto-pan triggers
    var reopen = state.openGrid && state.openGrid.key === key ? state.openGrid.code : null;
    state.rendering = true;
    groups[key].clearLayers();
    state.rendering = false;
    var index = {};
    L.geoJSON(fc, {
      style: style,
      onEachFeature: function (f, layer) {
        index[f.properties.code] = layer;
        layer.bindPopup(function () { return gridPopup(f.properties); }, {maxWidth: 360});
        layer.on('popupopen', function () { state.openGrid = {key: key, code: f.properties.code}; });
        layer.on('popupclose', function () {
          if (state.openGrid && state.openGrid.code === f.properties.code && !state.rendering) {
            state.openGrid = null;
          }
        });
      }
    }).addTo(groups[key]);
    state[key] = index;
    if (state.afterRender) { state.afterRender(); }
    state.matched[key] = fc.numberMatched;
    state.returned[key] = fc.numberReturned;
    if (fc.numberMatched > fc.numberReturned) {
      status('显示 ' + fc.numberReturned + ' / ' + fc.numberMatched +
             ' 个网格：请放大 Zoom in to see all grids');
    } else if (key === 'grids') {
      status('');
    }
    if (reopen && index[reopen] && !state.pendingPopup) {
      openGridPopup(index[reopen]);
    }
    if (state.pendingPopup && index[state.pendingPopup]) {
      openGridPopup(index[state.pendingPopup]);
      state.pendingPopup = null;
    }
  }

  function gridStyle(f) {
    var p = f.properties;
    var s = {color: '#555', weight: 1, fillColor: colour(p.open_hazards), fillOpacity: 0.6};
    if (p.overdue_hazards > 0) { s.color = '#d7191c'; s.weight = 4; s.dashArray = '8 4'; }
    return s;
  }

  function subStyle() {
    return {color: '#2c7bb6', weight: 1.5, dashArray: '4 3', fillColor: '#2c7bb6',
            fillOpacity: 0.05};
  }

  function loadGrids(key, level, generation) {
    var url = cfg.api + '/grids?level=' + level + '&bbox=' + bboxParam() + '&zoom=' +
      Math.round(map.getZoom()) + '&limit=' + GRID_LIMIT;
    return fetchJSON(url).then(function (fc) {
      if (generation === state.generation) {
        renderGrids(key, fc, level === 1 ? gridStyle : subStyle);
      }
    });
  }

  function loadSites(generation) {
    return fetchJSON(cfg.api + '/enterprises?bbox=' + bboxParam()).then(function (fc) {
      if (generation !== state.generation) { return; }
      groups.enterprises.clearLayers();
      groups.hidden.clearLayers();
      var counts = {enterprises: 0, hidden: 0};
      fc.features.forEach(function (f) {
        var p = f.properties;
        var hidden = p.hidden;
        var target = hidden ? groups.hidden : groups.enterprises;
        counts[hidden ? 'hidden' : 'enterprises'] += 1;
        var layer = L.geoJSON(f, {
          style: hidden ? {color: '#ff00cc', weight: 4, fillColor: '#ff00cc', fillOpacity: 0.35}
                        : {color: '#4d4d4d', weight: 1, fillColor: '#bababa', fillOpacity: 0.5},
          pointToLayer: function (_f, latlng) {
            return hidden ? L.marker(latlng, {icon: L.divIcon({className: 'gm-hidden-pin',
                                                                iconSize: [22, 22]})})
                          : L.circleMarker(latlng, {radius: 5, color: '#4d4d4d', weight: 1,
                                                    fillColor: '#bababa', fillOpacity: 0.9});
          }
        });
        layer.bindPopup(function () { return sitePopup(p); });
        layer.addTo(target);
        if (hidden && f.geometry.type !== 'Point') {
          // a pulsing pin on every hidden parcel too, so none can be missed at any zoom
          var c = layer.getBounds().getCenter();
          L.marker(c, {icon: L.divIcon({className: 'gm-hidden-pin', iconSize: [22, 22]})})
            .bindPopup(function () { return sitePopup(p); }).addTo(target);
        }
      });
      state.sites = counts;
      if (state.afterRender) { state.afterRender(); }
    });
  }

  function loadHazards(generation) {
    return fetchJSON(cfg.api + '/hazards?status=open&limit=' + cfg.pageMax + '&bbox=' + bboxParam())
      .then(function (fc) {
        if (generation !== state.generation) { return; }
        var markers = fc.features.map(function (f) {
          var p = f.properties;
          var cls = 'hz hz-' + p.level + (p.overdue ? ' hz-overdue' : '');
          var m = L.marker(L.latLng(f.geometry.coordinates[1], f.geometry.coordinates[0]),
                           {icon: L.divIcon({className: cls, iconSize: [14, 14]}),
                            title: p.code});
          m.bindPopup(function () { return hazardPopup(p); });
          m.hazardCode = p.code;
          m.hazardId = p.id;
          return m;
        });
        groups.hazards.clearLayers();
        groups.hazards.addLayers(markers);
        state.hazards = markers.length;
      });
  }

  var coverageLoaded = false;

  function loadCoverage() {
    if (!groups.coverage || coverageLoaded || !map.hasLayer(groups.coverage)) {
      return Promise.resolve();
    }
    coverageLoaded = true;
    return fetchJSON(cfg.api + '/coverage').then(function (fc) {
      L.geoJSON(fc, {style: {color: '#000', weight: 2, fillColor: '#ff0000', fillOpacity: 0.6},
                     onEachFeature: function (f, layer) {
                       layer.bindPopup(function () {
                         var box = el('div', null, 'gm-popup');
                         box.appendChild(el('h3', f.properties.problem));
                         box.appendChild(el('p', JSON.stringify(f.properties)));
                         return box;
                       });
                     }}).addTo(groups.coverage);
      if (state.afterRender) { state.afterRender(); }
    });
  }

  var fieldLoaded = false;

  function fieldPopup(p) {
    var box = el('div', null, 'gm-popup');
    box.appendChild(el('h3', p.name));
    box.appendChild(el('p', p.credit_code));
    var list = el('ul');
    (p.due || []).forEach(function (d) {
      // e.g. 走访 2025-W47: 0/1 (inspector)
      list.appendChild(el('li', d.kind_name + ' ' + d.previous + ': ' + d.previous_done + '/' +
                                d.times + (d.user ? ' (' + d.user + ')' : '')));
    });
    box.appendChild(list);
    return box;
  }

  // Enterprises overdue for a visit (orange) and grids without a patrol today (dashed, not
  // clickable, so grid popups stay reachable).  Logged-in users only.  A small park loads
  // the whole layer once; a big (tiled) one loads the view's bbox again on each refresh,
  // as the grids are, since the whole layer of 10^5 grids is tens of MB.
  function loadField(generation) {
    if (!groups.field || !map.hasLayer(groups.field) || !cfg.fieldApi ||
        (fieldLoaded && !cfg.tiles)) {
      return Promise.resolve();
    }
    fieldLoaded = true;
    var url = cfg.fieldApi + '?limit=' + cfg.pageMax + (cfg.tiles ? '&bbox=' + bboxParam() : '');
    return fetchJSON(url).then(function (fc) {
      // a small park loads its layer once: a newer refresh must not drop that answer
      if (cfg.tiles && generation !== state.generation) { return; }
      groups.field.clearLayers();
      L.geoJSON(fc, {
        filter: function (f) { return f.properties.layer === 'no_patrol_today'; },
        interactive: false,
        style: {color: '#6a1b9a', weight: 2, dashArray: '6 4', fill: false}
      }).addTo(groups.field);
      L.geoJSON(fc, {
        filter: function (f) { return f.properties.layer === 'overdue_enterprise'; },
        style: {color: '#e65100', weight: 2, fillColor: '#ff9800', fillOpacity: 0.6},
        pointToLayer: function (_f, latlng) {
          return L.circleMarker(latlng, {radius: 7, color: '#e65100', fillColor: '#ff9800',
                                         fillOpacity: 0.8});
        },
        onEachFeature: function (f, layer) {
          layer.bindPopup(function () { return fieldPopup(f.properties); });
        }
      }).addTo(groups.field);
      state.field = {};
      fc.features.forEach(function (f) {
        state.field[f.properties.layer] = (state.field[f.properties.layer] || 0) + 1;
      });
    });
  }

  function refresh(force) {
    state.scheduled = false;
    // small pans (a popup's auto-pan, say) inside the area already fetched reload nothing
    if (!force && state.fetched && state.fetched.zoom === map.getZoom() &&
        state.fetched.bounds.contains(map.getBounds())) {
      return Promise.resolve();
    }
    state.fetched = {zoom: map.getZoom(), bounds: map.getBounds().pad(0.2)};
    state.generation += 1;
    var g = state.generation;
    var jobs = [];
    // big parks draw their grids from vector tiles instead (gridmap-tiles.js)
    if (!cfg.tiles && map.hasLayer(groups.grids)) { jobs.push(loadGrids('grids', 1, g)); }
    if (!cfg.tiles && map.hasLayer(groups.subgrids)) { jobs.push(loadGrids('subgrids', 2, g)); }
    if (map.hasLayer(groups.enterprises) || map.hasLayer(groups.hidden)) { jobs.push(loadSites(g)); }
    if (map.hasLayer(groups.hazards)) { jobs.push(loadHazards(g)); }
    jobs.push(loadCoverage());
    jobs.push(loadField(g));
    return Promise.all(jobs).then(function () {
      if (g === state.generation) {
        if (!state.ready) { state.readyAt = performance.now(); }
        state.ready = true;
        document.body.dataset.ready = String(g);
      }
    }, function () { /* reported in state.errors and the status line */ });
  }

  var timer = null;
  var forced = false;
  function scheduleRefresh(ev) {
    state.scheduled = true;
    forced = forced || (ev && ev.type === 'overlayadd');
    clearTimeout(timer);
    timer = setTimeout(function () { var f = forced; forced = false; refresh(f); }, 150);
  }

  map.on('moveend', scheduleRefresh);
  map.on('overlayadd', scheduleRefresh);

  function zoomTo(result) {
    var b = result.bbox;
    if (result.kind === 'grid') {
      if (state.showGrid) { state.showGrid(result.code); } else { state.pendingPopup = result.code; }
    }
    if (b[0] === b[2] && b[1] === b[3]) {
      map.setView([b[1], b[0]], 18);
    } else {
      map.fitBounds([[b[1], b[0]], [b[3], b[2]]], {maxZoom: 18});
    }
  }

  document.getElementById('gm-search').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var q = document.getElementById('gm-q').value.trim();
    var list = document.getElementById('gm-results');
    list.replaceChildren();
    if (!q) { return; }
    fetchJSON(cfg.api + '/search?q=' + encodeURIComponent(q)).then(function (results) {
      if (!results.length) { list.appendChild(el('li', '无结果 No match')); return; }
      results.forEach(function (r) {
        var li = el('li');
        var b = el('button', (r.kind === 'grid' ? '网格 ' : '企业 ') + r.code + ' ' + r.name);
        b.type = 'button';
        b.dataset.kind = r.kind;
        b.addEventListener('click', function () { zoomTo(r); });
        li.appendChild(b);
        list.appendChild(li);
      });
      zoomTo(results[0]);
    }, function () {});
  });

  /* ---- the hazard ledger: log a hazard, move one through the workflow ---- */

  function apiError(r, body) {
    var e = body && body.error;
    return 'HTTP ' + r.status + (e ? ' ' + e.code + ': ' + e.message : '');
  }

  // A write names the user this page was opened for: if another account has logged in
  // since (another tab), the server refuses it (401) rather than record it as theirs.
  function asUser() {
    return encodeURIComponent(cfg.user ? cfg.user.name : '');
  }

  function sendJSON(url, payload, headers) {
    var h = {'Content-Type': 'application/json', Accept: 'application/json',
             'X-Gridmap-User': asUser()};
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    state.loads += 1;
    return fetch(url, {method: 'POST', headers: h, credentials: 'same-origin',
                       body: JSON.stringify(payload)})
      .then(function (r) {
        return r.json().then(function (b) { return b; }, function () { return null; })
          .then(function (body) { state.loads -= 1; return {response: r, body: body}; });
      }, function (err) { state.loads -= 1; throw err; });
  }

  function updateOverview() {
    return fetchJSON(cfg.api).then(function (park) {
      var p = park.properties || {};
      ['open_hazards', 'overdue_hazards', 'grids', 'sub_grids', 'enterprises', 'hidden_units']
        .forEach(function (k) {
          var dd = document.getElementById('gm-count-' + k.replace(/_/g, '-'));
          if (dd && p[k] !== undefined) { dd.textContent = String(p[k]); dd.dataset.value = p[k]; }
        });
    }, function () {});
  }

  function reloadLedgerLayers() {
    // the hazards layer and the grids' open-hazard counts and colours change together
    return Promise.all([refresh(true), updateOverview(),
                        state.reloadTiles ? state.reloadTiles() : null]);
  }

  var TARGET_LABELS = {rectifying: '开始整改 Start rectifying', supervising: '提交督导 Submit',
                       closed: '销号 Close', found: '排查 Found'};

  function actionLabel(from, to) {
    if (from === 'supervising' && to === 'rectifying') { return '驳回 Reject'; }
    if (from === 'closed' && to === 'rectifying') { return '回头看重开 Reopen'; }
    if (from === 'found' && to === 'supervising') { return '立行立改 Fixed on the spot'; }
    return TARGET_LABELS[to] || to;
  }

  function needsDeadline(from, to) {
    return to === 'rectifying' && (from === 'found' || from === 'closed');
  }

  function renderActions(box, h, etag, message, messageClass) {
    var div = box.querySelector('.gm-hz-actions');
    if (!div) { return; }
    div.replaceChildren();
    div.dataset.version = h.version;
    div.dataset.status = h.status;
    // the freshest state from the ledger API replaces the layer's copy
    var set = function (field, text) {
      var td = box.querySelector('td[data-field="' + field + '"]');
      if (td) { td.textContent = text; }
    };
    set('status', statusText(h.status, h.overdue));
    set('deadline', h.deadline || '—');
    set('overdue', h.overdue ? '是 yes' : '否 no');
    set('escalation', escalationText(h.escalation));
    var msg = el('p', message || '', 'gm-hz-msg' + (messageClass ? ' ' + messageClass : ''));
    var targets = h.allowed_transitions || [];
    if (!targets.length) {
      div.appendChild(el('p', '无可执行操作 No action for role ' + cfg.user.role, 'gm-hz-none'));
      div.appendChild(msg);
      return;
    }
    var note = el('textarea');
    note.className = 'gm-hz-note';
    note.rows = 2;
    note.maxLength = 2000;
    var noteLabel = el('label', '说明 Note');
    noteLabel.appendChild(note);
    div.appendChild(noteLabel);
    var deadline = null;
    if (targets.some(function (t) { return needsDeadline(h.status, t); })) {
      deadline = el('input');
      deadline.type = 'date';
      deadline.className = 'gm-hz-deadline';
      deadline.min = cfg.today;
      var dl = el('label', '整改期限 Deadline');
      dl.appendChild(deadline);
      div.appendChild(dl);
    }
    targets.forEach(function (to) {
      var b = el('button', actionLabel(h.status, to), 'gm-hz-action');
      b.type = 'button';
      b.dataset.to = to;
      b.addEventListener('click', function () {
        var payload = {to: to, note: note.value};
        if (needsDeadline(h.status, to)) {
          if (!deadline.value) {
            msg.textContent = '请填写整改期限 Give a deadline';
            msg.className = 'gm-hz-msg gm-error';
            return;
          }
          payload.deadline = deadline.value;
        }
        if (to === 'closed') { payload.supervision = {note: note.value}; }
        div.querySelectorAll('button').forEach(function (x) { x.disabled = true; });
        msg.textContent = '提交中 Sending…';
        msg.className = 'gm-hz-msg';
        sendJSON(cfg.hazardApi + h.id + '/transitions', payload, {'If-Match': etag})
          .then(function (res) {
            var r = res.response;
            if (r.ok) {
              var done = h.code + ' → ' + (cfg.states[res.body.status] || '') + ' ' +
                res.body.status;
              state.lastTransition = res.body;
              renderActions(box, res.body, r.headers.get('ETag'), '已更新 Updated: ' + done,
                            'gm-ok');
              // the popup closes when the layer reloads: the panel keeps the message
              logMessage('已更新 Updated: ' + done, 'gm-ok');
              reloadLedgerLayers();
            } else if (r.status === 409 || r.status === 412) {
              // the popup shows the stored state again, with its new version and actions
              loadActions(box, h.id, '已被他人修改，已重新加载 Changed by someone else, reloaded',
                          'gm-error');
            } else {
              renderActions(box, h, etag, apiError(r, res.body), 'gm-error');
            }
          }, function (err) {
            renderActions(box, h, etag, String(err), 'gm-error');
          });
      });
      div.appendChild(b);
    });
    div.appendChild(msg);
  }

  function loadActions(box, id, message, messageClass) {
    state.loads += 1;
    return fetch(cfg.hazardApi + id, {headers: {Accept: 'application/json'},
                                      credentials: 'same-origin', cache: 'no-store'})
      .then(function (r) {
        return r.json().then(function (body) {
          state.loads -= 1;
          if (!r.ok) {
            renderActions(box, {allowed_transitions: []}, null, apiError(r, body), 'gm-error');
            return;
          }
          renderActions(box, body, r.headers.get('ETag'), message, messageClass);
        });
      })
      .catch(function (err) { state.loads = Math.max(0, state.loads - 1); status(String(err)); });
  }

  function uploadPhoto(id, file) {
    var body = new FormData();
    body.append('photo', file, file.name);
    state.loads += 1;
    return fetch(cfg.hazardApi + id + '/photos', {
      method: 'POST', body: body, credentials: 'same-origin',
      headers: {Accept: 'application/json', 'X-CSRFToken': cfg.csrf || '',
                'X-Gridmap-User': asUser()}
    }).then(function (r) {
      return r.json().then(function (b) { return b; }, function () { return null; })
        .then(function (b) {
          state.loads -= 1;
          if (r.status !== 201) { throw new Error(apiError(r, b)); }
          return b;
        });
    }, function (err) { state.loads -= 1; throw err; });
  }

  var log = {active: false, point: null, marker: null};
  state.log = log;
  var logStart = document.getElementById('gm-log-start');

  function logMessage(text, cls) {
    var m = document.getElementById('gm-log-msg');
    if (!m) { status(text); return; }
    m.textContent = text || '';
    m.className = cls || '';
  }

  // In log mode a click anywhere on the map picks the hazard's point: the grid,
  // enterprise and coverage shapes stop catching clicks (and opening popups).
  function setShapesInteractive(on) {
    var walk = function (layer) {
      if (layer.eachLayer) { layer.eachLayer(walk); return; }
      if (!(layer instanceof L.Path)) { return; }
      layer.options.interactive = on;
      if (layer._path) { layer._path.classList.toggle('leaflet-interactive', on); }
    };
    ['grids', 'subgrids', 'enterprises', 'hidden', 'coverage'].forEach(function (k) {
      if (groups[k]) { walk(groups[k]); }
    });
  }
  state.afterRender = function () { if (log.active) { setShapesInteractive(false); } };

  function setLogMode(on) {
    log.active = on;
    setShapesInteractive(!on);
    logStart.setAttribute('aria-pressed', String(on));
    document.getElementById('gm-log-help').hidden = !on;
    map.getContainer().classList.toggle('gm-logging', on);
    if (!on) {
      document.getElementById('gm-log-form').hidden = true;
      log.point = null;
      if (log.marker) { map.removeLayer(log.marker); log.marker = null; }
    }
  }

  function pickPoint(latlng, how) {
    log.point = {lon: latlng.lng, lat: latlng.lat};
    if (log.marker) { map.removeLayer(log.marker); }
    log.marker = L.circleMarker(latlng, {radius: 8, color: '#b00020', weight: 3,
                                         fillOpacity: 0.2, interactive: false}).addTo(map);
    document.getElementById('gm-log-where').textContent =
      latlng.lng.toFixed(6) + ', ' + latlng.lat.toFixed(6) + (how ? ' (' + how + ')' : '');
    document.getElementById('gm-log-form').hidden = false;
    logMessage('');
  }

  if (logStart && cfg.canLog) {
    logStart.addEventListener('click', function () { setLogMode(!log.active); logMessage(''); });
    document.getElementById('gm-log-cancel').addEventListener('click', function () {
      setLogMode(false);
    });
    document.getElementById('gm-log-discard').addEventListener('click', function () {
      setLogMode(false);
    });
    map.on('click', function (ev) {
      if (log.active) { pickPoint(ev.latlng, ''); }
    });
    document.getElementById('gm-log-locate').addEventListener('click', function () {
      if (!navigator.geolocation) {
        logMessage('此浏览器不能定位 This browser cannot give a position', 'gm-error');
        return;
      }
      logMessage('定位中 Locating…');
      navigator.geolocation.getCurrentPosition(function (pos) {
        var ll = L.latLng(pos.coords.latitude, pos.coords.longitude);
        pickPoint(ll, '±' + Math.round(pos.coords.accuracy) + ' m');
        map.setView(ll, Math.max(map.getZoom(), 17));
      }, function (err) {
        logMessage('无法定位 No position: ' + err.message, 'gm-error');
      }, {enableHighAccuracy: true, timeout: 20000, maximumAge: 60000});
    });
    document.getElementById('gm-log-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!log.point) { logMessage('请先点击地图 Click the map first', 'gm-error'); return; }
      var category = document.getElementById('gm-log-category').value;
      if (!category) { logMessage('请选择类别 Choose a category', 'gm-error'); return; }
      var submit = document.getElementById('gm-log-submit');
      submit.disabled = true;
      logMessage('提交中 Sending…');
      sendJSON(cfg.hazardsApi, {
        lon: Number(log.point.lon.toFixed(7)), lat: Number(log.point.lat.toFixed(7)),
        category: category, level: document.getElementById('gm-log-level').value,
        description: document.getElementById('gm-log-description').value
      }).then(function (res) {
        submit.disabled = false;
        if (res.response.status === 201) {
          var h = res.body;
          var done = '已记录 Logged ' + h.code + (h.grid ? ' · 网格 grid ' + h.grid.code : '');
          var photo = document.getElementById('gm-log-photo').files[0];
          setLogMode(false);
          document.getElementById('gm-log-form').reset();
          logMessage(done, 'gm-ok');
          reloadLedgerLayers();
          (photo ? uploadPhoto(h.id, photo) : Promise.resolve(null)).then(function (p) {
            if (p) { logMessage(done + ' · 照片 photo ' + p.id, 'gm-ok'); }
            h.photo = p;
            state.lastLogged = h;
          }, function (err) {
            logMessage(done + ' · 照片上传失败 photo not stored: ' + err.message, 'gm-error');
            state.lastLogged = h;
          });
        } else {
          logMessage(apiError(res.response, res.body), 'gm-error');
        }
      }, function (err) {
        submit.disabled = false;
        logMessage(String(err), 'gm-error');
      });
    });
  }

  state.map = map;
  state.groups = groups;
  // for gridmap-tiles.js, which draws big parks' grids from vector tiles
  state.colour = colour;
  state.gridPopup = gridPopup;
  state.fetchJSON = fetchJSON;
  state.status = status;
  state.openGridPopup = function (code) {
    var layer = state.grids[code] || state.subgrids[code];
    if (layer) { openGridPopup(layer); }
    return Boolean(layer);
  };
  refresh(true);
});
