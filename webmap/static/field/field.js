/* The field app (我的网格): work list, capture forms, offline queue and sync.
 *
 * Data model (IndexedDB "gridmap-field"):
 *   kv     key -> value: "session" (user, parks, CSRF token), "bundle:<user>:<park>" (the
 *          work list and offline bundle of GET /api/me/worklist), "park" (the chosen park),
 *          "logout" (the user who logged out offline: the server is told when back online).
 * The session and the bundles are dropped when the user logs out or the server answers 401,
 * so a shared phone never shows one user's work list to the next holder; the queue stays
 * (sent by its own user's next session) but shows other users' items without their content.
 *   queue  one record per captured thing, keyed by its client id (a UUID):
 *          {id, seq, kind: hazard|visit|transition|photo, park, body, blob?, parent?,
 *           state: pending|conflict|failed|done, attempts, nextAt, error, serverId}
 * Every create is sent with Idempotency-Key = its client id, so a request whose answer was
 * lost is simply sent again; every queued write and the work list name their user in
 * X-Gridmap-User, so if the phone's cookie now belongs to someone else (another tab logged
 * another user in) the server refuses them (401 account_changed): the app then forgets the
 * cached session and work list, asks who is logged in, and the items wait for their user; transitions carry If-Match with the version the phone read.
 * A 409/412 or another refusal keeps the item (state conflict/failed) with the user's input
 * until the user retries it on the current version or discards it; network failures, 5xx
 * and 429 are retried with exponential backoff.  User text reaches the DOM only through
 * textContent.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  // version: the hash of the shell this script came with (the server's is in session.json).
  const CONFIG = {swUrl: script.dataset.sw, scope: script.dataset.scope,
                  loginUrl: script.dataset.login, version: script.dataset.version};
  //: How long a check that this script is the server's version holds (ms).
  const VERSION_CHECK_MS = 60000;
  const DB_NAME = "gridmap-field";
  const KINDS = {patrol: "巡查", visit: "走访", recheck: "回头看"};
  const PHOTO_TAGS = {before: "整改前", after: "整改后", visit: "走访"};
  const STATE_TEXT = {pending: "待同步", conflict: "冲突", failed: "被拒绝", done: "已同步"};
  const LEVELS = {general: "一般", major: "重大"};

  const app = {
    session: null, park: null, bundle: null, map: null, layers: null, picking: null,
    points: {hazard: null, visit: null}, editing: {hazard: null, visit: null},
    syncing: false, syncs: 0, captured: 0, timer: null,
    // Backoff after a failed attempt: base * 2^(attempts-1) ms, capped, with +-20 % jitter.
    backoff: {base: 1000, max: 60000},
    // Requests sent by the queue, and those that got no usable answer (retried later).
    stats: {sent: 0, lost: 0, replayed: 0},
    lastError: null, problems: 0,
  };
  window.gridfield = app;

  // ---- IndexedDB ---------------------------------------------------------------------------

  let dbPromise = null;

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB_NAME, 1);
        req.onupgradeneeded = () => {
          const db = req.result;
          db.createObjectStore("kv");
          db.createObjectStore("queue", {keyPath: "id"});
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return dbPromise;
  }

  async function store(name, mode, work) {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(name, mode);
      const result = work(tx.objectStore(name));
      tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  const kvGet = (key) => store("kv", "readonly", (s) => s.get(key));
  const kvPut = (key, value) => store("kv", "readwrite", (s) => s.put(value, key));
  const kvDelete = (key) => store("kv", "readwrite", (s) => s.delete(key));
  const kvKeys = () => store("kv", "readonly", (s) => s.getAllKeys());
  const queueAll = () => store("queue", "readonly", (s) => s.getAll());
  const queueGet = (id) => store("queue", "readonly", (s) => s.get(id));
  const queuePut = (item) => store("queue", "readwrite", (s) => s.put(item));
  // One transaction: a capture and its photos and request are stored together or not at all.
  const queuePutAll = (items) => store("queue", "readwrite", (s) => {
    items.forEach((item) => s.put(item));
  });
  const queueDelete = (id) => store("queue", "readwrite", (s) => s.delete(id));

  // ---- small DOM helpers (text only) -----------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function button(text, onClick, className) {
    const node = el("button", text, className);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  function message(text, isError, kind) {
    const box = $("fm-msg");
    box.dataset.kind = kind || "";
    box.textContent = text || "";
    box.hidden = !text;
    box.classList.toggle("fm-error", Boolean(isError));
  }

  function uuid() {
    if (crypto.randomUUID) {
      return crypto.randomUUID();
    }
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function localDate(d) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  /** The day ``d`` is in the park's zone (Asia/Shanghai), whatever zone the phone is set to:
   * the server counts days and weeks there and refuses a found_date after its today. */
  function parkDay(d) {
    const zone = (app.session || {}).timezone || "Asia/Shanghai";
    const parts = {};
    for (const p of new Intl.DateTimeFormat("en-US", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit"}).formatToParts(d)) {
      parts[p.type] = p.value;
    }
    return `${parts.year}-${parts.month}-${parts.day}`;
  }

  function isoWithOffset(d) {
    // The device's time with its UTC offset (the server keeps both it and its own time).
    const off = -d.getTimezoneOffset();
    const sign = off >= 0 ? "+" : "-";
    const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
    return `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
      `${sign}${pad(off / 60)}:${pad(off % 60)}`;
  }

  // ---- network -----------------------------------------------------------------------------

  /** The header that makes the server refuse a request if ``name`` is not logged in. */
  function asUser(name) {
    return {"X-Gridmap-User": encodeURIComponent(name || "")};
  }

  /** fetch that never throws: {ok, status, body, network} (network true: no answer at all). */
  async function call(url, options) {
    let response;
    try {
      response = await fetch(url, {credentials: "same-origin", cache: "no-store", ...options});
    } catch (exc) {
      app.checkedAt = 0;  // the server may be a new deploy when it answers again
      return {ok: false, status: 0, body: null, network: true};
    }
    let body = null;
    try {
      body = await response.json();
    } catch (exc) {
      body = null;  // a dropped answer (empty 502) or an HTML error page
    }
    return {ok: response.ok, status: response.status, body, network: false,
            replayed: response.headers.get("Idempotent-Replayed") === "true"};
  }

  async function refreshSession() {
    let got = await call(CONFIG.scope + "session.json", {headers: {Accept: "application/json"}});
    const leaving = await kvGet("logout");
    if (got.ok && leaving) {
      await kvDelete("logout");
      if (got.body.user.name === leaving) {  // logged out offline: end it on the server now
        await endServerSession(got.body.csrf);
        got = {ok: false, status: 401, body: null, network: false};
      }
    }
    if (got.ok) {
      app.checkedAt = Date.now();
      if (got.body.version && CONFIG.version && got.body.version !== CONFIG.version) {
        // Not awaited: the app draws what it holds meanwhile; app.stale stops any send now.
        run(staleApp(got.body.version));
        return got;
      }
      if (userName() && userName() !== got.body.user.name) {
        await signedOut();  // another user's cookie now: forget the last one's session and lists
      }
      const returning = !app.session || app.loggedOut;
      app.session = got.body;
      app.loggedOut = false;
      await kvPut("session", got.body);
      if (returning && app.ready) {
        await resume();
      }
    } else if (got.status === 401) {
      await signedOut();
    }
    return got;
  }

  /** The server runs another version of the app (a deploy): this script may speak an old API.
   *
   * Nothing more is sent by it: the service worker is asked to install the new shell (its
   * cache name carries the version) and the page reloads once the new worker controls it,
   * unless a form is half filled (then on leaving the form).  The queue stays in IndexedDB
   * and is sent by the new script.  One reload per server version, so a deploy whose worker
   * cannot install never makes the page reload for ever.
   */
  async function staleApp(version) {
    if (app.stale) {
      return;
    }
    app.stale = version;
    message("应用已更新，正在载入新版本…（未上传的记录保存在本机）", false, "update");
    const registration = "serviceWorker" in navigator ?
      await navigator.serviceWorker.getRegistration(CONFIG.scope) : null;
    if (registration) {
      let fresh = null;
      try {
        await registration.update();
        fresh = registration.installing || registration.waiting;
      } catch (exc) {
        fresh = null;
      }
      // The new worker stores the new shell, then takes over (skipWaiting, clients.claim).
      const ready = !fresh || await new Promise((resolve) => {
        const watch = () => {
          if (fresh.state === "activated" || fresh.state === "redundant") {
            resolve(fresh.state === "activated");
          }
        };
        fresh.addEventListener("statechange", watch);
        watch();
      });
      if (!ready || !registration.active) {
        message("新版本暂时无法载入，请联网后重新打开应用", true, "update");
        return;
      }
    }
    app.reloadDue = true;
    reloadWhenIdle();
  }

  /** Reload for a new version now, unless the user is filling in a form. */
  function reloadWhenIdle() {
    if (!app.reloadDue) {
      return;
    }
    const view = document.querySelector(".fm-view:not([hidden])");
    const form = view && view.querySelector("form");
    // A point being picked on the map belongs to a form too.
    const typing = app.picking || form && (Array.from(form.querySelectorAll("textarea, input[type=date]"))
      .some((f) => f.value) || Array.from(form.querySelectorAll("input[type=file]"))
      .some((f) => f.files.length) || Boolean(app.points[form.id.split("-")[1]]));
    if (typing) {
      message("应用已更新：保存或离开此表单后载入新版本", false, "update");
      return;
    }
    const key = "gridmap-field-reloaded-for";
    if (sessionStorage.getItem(key) === app.stale) {
      message("应用已更新，请关闭后重新打开", true, "update");
      return;
    }
    sessionStorage.setItem(key, app.stale);
    location.reload();
  }

  function bundleKey(park) {
    return `bundle:${userName()}:${park}`;
  }

  /** No one is logged in any more: drop the cached session and every cached work list. */
  async function signedOut() {
    app.loggedOut = true;
    app.session = null;
    app.bundle = null;
    await kvDelete("session");
    for (const key of await kvKeys()) {
      if (String(key).startsWith("bundle:")) {
        await kvDelete(key);
      }
    }
    if (app.ready) {
      renderAll();
    }
  }

  async function endServerSession(csrf) {
    return call("/logout", {method: "POST", headers: {"X-CSRFToken": csrf || ""},
                            credentials: "same-origin", redirect: "manual"});
  }

  /** The logout button: forget this user's data here, end the session (now or once online). */
  async function logout() {
    const name = userName();
    const csrf = (app.session || {}).csrf;
    await signedOut();
    if (name && !navigator.onLine) {
      await kvPut("logout", name);
    } else if (name) {
      const got = await endServerSession(csrf);
      if (got.network) {
        await kvPut("logout", name);
      }
    }
    app.leftByUser = true;
    renderStatus();
  }

  /** The park to show: the chosen one if the user works there, else their first. */
  async function choosePark() {
    const parks = (app.session || {}).parks || [];
    if (!parks.some((p) => p.code === app.park)) {
      app.park = parks.length ? parks[0].code : null;
      await kvPut("park", app.park);
    }
    app.bundle = app.park ? (await kvGet(bundleKey(app.park))) || null : null;
  }

  /** A session after none (the same user or the next one): their parks and work list. */
  async function resume() {
    app.leftByUser = false;
    app.fitted = false;
    if ($("fm-msg").dataset.kind === "login") {
      message("");
    }
    await choosePark();
    renderParks();
    renderAll();
    renderStatus();
    await loadBundle();
  }

  async function loadBundle() {
    if (!app.park || !userName()) {
      return;
    }
    // Stored under this user's name: the server must answer for this user and no other.
    const got = await call(`/api/me/worklist?park=${encodeURIComponent(app.park)}`,
                           {headers: {Accept: "application/json", ...asUser(userName())}});
    if (got.ok) {
      got.body.fetched_at = new Date().toISOString();
      app.bundle = got.body;
      await kvPut(bundleKey(app.park), got.body);
      renderAll();
      app.loadedAt = app.loadedAt || performance.now();  // first work list from the network
    } else if (got.status === 401) {
      await signedOut();
      renderStatus();
    }
  }

  // ---- the queue ---------------------------------------------------------------------------

  let seq = Date.now();

  function userName() {
    return ((app.session || {}).user || {}).name || null;
  }

  function newItem(kind, fields) {
    // The item remembers who captured it: on a shared phone, only they may send it.
    return {id: uuid(), seq: seq++, kind, park: app.park, user: userName(),
            state: "pending", attempts: 0, nextAt: 0, error: null, serverId: null,
            createdAt: new Date().toISOString(), ...fields};
  }

  async function enqueue(kind, fields) {
    const item = newItem(kind, fields);
    await queuePut(item);
    return item;
  }

  function backoffDelay(attempts) {
    const raw = Math.min(app.backoff.max, app.backoff.base * 2 ** Math.max(0, attempts - 1));
    return raw * (0.8 + 0.4 * Math.random());
  }

  function idempotencyKey(item) {
    // A retry on the current version sends a new body, so it needs a key of its own.
    return item.round ? `${item.id}-r${item.round}` : item.id;
  }

  /** Send one item; return its server answer (see call). */
  async function send(item, parent) {
    const headers = {Accept: "application/json", "Idempotency-Key": idempotencyKey(item),
                     ...asUser(item.user)};
    if (item.kind === "hazard") {
      return call(`/api/parks/${encodeURIComponent(item.park)}/hazards`, {
        method: "POST", headers: {...headers, "Content-Type": "application/json"},
        body: JSON.stringify(item.body)});
    }
    if (item.kind === "visit") {
      return call(`/api/parks/${encodeURIComponent(item.park)}/visits`, {
        method: "POST", headers: {...headers, "Content-Type": "application/json"},
        body: JSON.stringify({client_id: item.id, ...item.body})});
    }
    if (item.kind === "request") {
      // The visit is named by its client id, the id of the parent item.
      return call(`/api/parks/${encodeURIComponent(item.park)}/requests`, {
        method: "POST", headers: {...headers, "Content-Type": "application/json"},
        body: JSON.stringify({visit: parent.id, ...item.body})});
    }
    if (item.kind === "transition") {
      return call(`/api/hazards/${item.hazardId}/transitions`, {
        method: "POST", headers: {...headers, "Content-Type": "application/json",
                                  "If-Match": `"${item.version}"`},
        body: JSON.stringify(item.body)});
    }
    // A photo goes to the hazard or visit its parent item created.
    const form = new FormData();
    form.append("tag", item.tag);
    form.append("photo", item.blob, "photo.jpg");
    const owner = parent.kind === "hazard" ? "hazards" : "visits";
    return call(`/api/${owner}/${parent.serverId}/photos`, {
      method: "POST", headers: {...headers, "X-CSRFToken": (app.session || {}).csrf || ""},
      body: form});
  }

  function retryable(got) {
    return got.network || got.status >= 500 || got.status === 429 || got.status === 408;
  }

  async function syncItem(item) {
    let parent = null;
    if (item.parent) {
      parent = await queueGet(item.parent);
      if (!parent || parent.state !== "done") {
        return false;  // waits for its hazard or visit (a refused parent keeps it waiting)
      }
    }
    let got = await send(item, parent);
    if (got.status === 400 && got.body && got.body.error &&
        got.body.error.code === "csrf_failed") {
      await refreshSession();  // the token expired with a session; fetch a new one once
      if (app.stale) {
        return false;  // and the server is a new deploy: the new script sends it
      }
      got = await send(item, parent);
    }
    item.attempts += 1;
    app.stats.sent += 1;
    app.stats.replayed += got.replayed ? 1 : 0;
    if (got.ok) {
      item.state = "done";
      item.serverId = got.body && got.body.id;
      item.result = got.body;
      item.error = null;
      item.doneAt = new Date().toISOString();
    } else if (got.status === 401) {
      // Logged out, or another user's cookie (account_changed): the item stays pending and
      // is sent after its own user logs in again.
      await signedOut();
      item.attempts -= 1;
      await queuePut(item);
      return false;
    } else if (retryable(got)) {
      app.stats.lost += 1;
      item.nextAt = Date.now() + backoffDelay(item.attempts);
      item.error = {status: got.status, code: got.network ? "offline" : "server",
                    message: got.network ? "无网络" : `服务器暂不可用 (${got.status})`};
    } else {
      const error = (got.body && got.body.error) || {};
      item.state = got.status === 409 || got.status === 412 ? "conflict" : "failed";
      item.error = {status: got.status, code: error.code || String(got.status),
                    message: error.message || `HTTP ${got.status}`, details: error.details || {}};
    }
    await queuePut(item);
    return got.ok;
  }

  /** One pass over the due items, oldest first; parents before their photos. */
  async function syncNow() {
    if (app.syncing) {
      return app.syncPromise;
    }
    app.syncing = true;
    app.syncPromise = (async () => {
      let changed = false;
      try {
        if (app.stale) {
          return;  // an old script: the new one sends the queue after the reload
        }
        const due = (await queueAll()).some((i) => i.state === "pending" &&
                                              i.user === userName() && i.nextAt <= Date.now());
        if (app.loggedOut || (due && Date.now() - (app.checkedAt || 0) > VERSION_CHECK_MS)) {
          // Before sending: is anyone logged in, and does the server still speak this
          // script's API (checked again after any network failure)?
          const got = await refreshSession();
          if (!got.ok || app.stale) {
            return;
          }
          app.loggedOut = false;
        }
        changed = await oneTabAtATime(async () => {
          let progress = true;
          let stored = false;
          while (progress) {  // a parent that syncs lets its photos go in the same pass
            progress = false;
            const items = (await queueAll())
              .filter((i) => i.state === "pending" && i.user === userName())
              .sort((a, b) => a.seq - b.seq);
            for (const item of items) {
              if (item.nextAt > Date.now() || app.loggedOut) {
                continue;
              }
              if (await syncItem(item)) {
                progress = stored = true;
              }
            }
          }
          await prune();
          return stored;
        });
      } finally {
        app.syncing = false;
        app.syncs += 1;
        await renderQueue();
        renderStatus();
      }
      if (changed) {
        await loadBundle();
      }
    })();
    return app.syncPromise;
  }

  /** Run ``work`` unless another tab of the app is syncing (then skip this pass; false).
   *
   * The tabs share one queue in IndexedDB: without the lock two open tabs each sent every
   * item, photos included (the server replayed the second, but the phone uploaded twice).
   */
  async function oneTabAtATime(work) {
    if (!navigator.locks) {
      return work();
    }
    return navigator.locks.request("gridmap-field-sync", {ifAvailable: true},
                                   async (lock) => (lock ? work() : false));
  }

  /** Forget synced items nothing waits for (their server ids were needed by their photos). */
  async function prune() {
    const items = await queueAll();
    const waiting = new Set(items.filter((i) => i.state !== "done" && i.parent)
      .map((i) => i.parent));
    for (const item of items) {
      if (item.state === "done" && !waiting.has(item.id)) {
        app.synced = (app.synced || 0) + 1;
        await queueDelete(item.id);
      }
    }
  }

  function schedule() {
    clearInterval(app.timer);
    app.timer = setInterval(() => {
      if (navigator.onLine) {
        syncNow();
      }
    }, 1000);
  }

  // ---- capture -----------------------------------------------------------------------------

  /** Decode, orient and downscale a photo on the device (longest side 1600 px, JPEG). */
  async function downscale(file, maxSide = 1600) {
    const bitmap = await createImageBitmap(file, {imageOrientation: "from-image"});
    const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return new Promise((resolve, reject) => canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("照片无法编码"))), "image/jpeg", 0.85));
  }

  /** The photo items of ``parent``, every photo decoded and downscaled before any is kept.
   *
   * A photo the phone cannot decode (a HEIC file, a damaged one) throws, naming it, before
   * anything is queued: the form keeps its input, and saving again cannot make a second
   * record of the same visit or hazard.
   */
  async function photoItems(input, parent, tag) {
    const items = [];
    for (const file of Array.from(input.files || [])) {
      let blob;
      try {
        blob = await downscale(file);
      } catch (exc) {
        throw new Error(`照片「${file.name}」无法读取（${exc.message || exc}），请换一张或去掉它；` +
                        "记录尚未保存");
      }
      items.push(newItem("photo", {parent: parent.id, blob, tag, originalSize: file.size}));
    }
    return items;
  }

  /** Keep a capture with its photos and request in one transaction, or nothing of it. */
  async function keep(items) {
    try {
      await queuePutAll(items);
    } catch (exc) {
      // QuotaExceededError above all: the phone is full; the form keeps what was typed.
      throw new Error(`无法保存到本机（${exc && exc.name || exc}）：存储空间不足？` +
                      "请减少照片或上传已保存的记录；记录尚未保存");
    }
  }

  function pointOf(kind) {
    const p = app.points[kind];
    return p ? {type: "Point", coordinates: [p.lon, p.lat]} : null;
  }

  function showPoint(kind) {
    const out = document.querySelector(`.fm-where[data-form="${kind}"] .fm-point`);
    const p = app.points[kind];
    out.textContent = !p ? "未定位" : (p.accuracy != null ?
      `GPS ${p.lat.toFixed(6)}, ${p.lon.toFixed(6)} ±${Math.round(p.accuracy)} m` :
      `地图选点 ${p.lat.toFixed(6)}, ${p.lon.toFixed(6)}`);
  }

  function locate(kind) {
    const out = document.querySelector(`.fm-where[data-form="${kind}"] .fm-point`);
    if (!navigator.geolocation) {
      out.textContent = "本设备无GPS，请在地图上选点";
      return;
    }
    out.textContent = "定位中…";
    navigator.geolocation.getCurrentPosition((pos) => {
      app.points[kind] = {lon: pos.coords.longitude, lat: pos.coords.latitude,
                          accuracy: pos.coords.accuracy};
      showPoint(kind);
    }, (err) => {
      out.textContent = `无法定位（${err.message || err.code}），请在地图上选点`;
    }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 0});
  }

  function pick(kind) {
    app.picking = kind;
    showView("map");
    $("fm-map-hint").textContent = "点击地图选择位置";
  }

  /** Whether someone is logged in; if not, say so (an item with no user could never be sent). */
  function signedIn() {
    if (!userName()) {
      message("请先登录再记录（登录后才能保存到队列）", true, "login");
      return false;
    }
    return true;
  }

  async function submitHazard(event) {
    event.preventDefault();
    if (!signedIn()) {
      return;
    }
    const form = event.target;
    const location = pointOf("hazard");
    if (!location) {
      message("请先定位：使用GPS或在地图上选点", true);
      return;
    }
    if (!form.category.value) {
      message("请选择隐患类别", true);
      return;
    }
    const body = {location, category: form.category.value, level: form.level.value,
                  description: form.description.value, found_date: parkDay(new Date())};
    const item = await edited("hazard", body) || newItem("hazard", {body});
    await keep([item, ...await photoItems(form.photo, item, "before")]);
    app.editing.hazard = null;
    form.reset();
    app.points.hazard = null;
    showPoint("hazard");
    message("隐患已保存，将在联网时上传");
    await afterCapture();
  }

  async function submitVisit(event) {
    event.preventDefault();
    if (!signedIn()) {
      return;
    }
    const form = event.target;
    const location = pointOf("visit");
    if (!location) {
      message("请先定位：使用GPS或在地图上选点", true);
      return;
    }
    const asks = form.request_category.value && form.request_text.value.trim();
    if (asks && !form.enterprise.value) {
      // A request is an enterprise's: without one the server refuses it after the visit.
      message("企业诉求需要选择企业", true);
      return;
    }
    const body = {kind: form.kind.value, occurred_at: isoWithOffset(new Date()), location,
                  note: form.note.value, findings: form.findings.value};
    const accuracy = app.points.visit.accuracy;
    if (accuracy != null) {
      body.accuracy_m = Math.round(accuracy * 10) / 10;
    }
    if (form.enterprise.value) {
      body.enterprise = form.enterprise.value;
    }
    if (form.hazard_id.value) {
      body.hazard_id = Number(form.hazard_id.value);
    }
    const item = await edited("visit", body) || newItem("visit", {body});
    const items = [item, ...await photoItems(form.photo, item, "visit")];
    app.editing.visit = null;
    if (asks) {
      // 走访发现诉求: a request on this visit, sent once the visit is stored.
      items.push(newItem("request", {parent: item.id, body: {
        category: form.request_category.value, description: form.request_text.value}}));
    }
    await keep(items);
    form.reset();
    form.hazard_id.value = "";
    document.querySelector(".fm-recheck-of").hidden = true;
    app.points.visit = null;
    showPoint("visit");
    message("走访记录已保存，将在联网时上传");
    await afterCapture();
  }

  async function submitMove(event) {
    event.preventDefault();
    if (!signedIn()) {
      return;
    }
    const form = event.target;
    const hazard = findHazard(Number(form.hazard.value));
    if (!hazard || !form.to.value) {
      message("请选择操作", true);
      return;
    }
    const body = {to: form.to.value, note: form.note.value};
    if (form.to.value === "rectifying") {
      body.deadline = form.deadline.value;
    }
    await enqueue("transition", {hazardId: hazard.id, hazardCode: hazard.code,
                                 version: hazard.version, body});
    form.reset();
    message(`${hazard.code} 的办理已保存，将在联网时提交`);
    await afterCapture();
  }

  async function afterCapture() {
    app.captured += 1;  // the item and its photos are in IndexedDB now
    showView("list");
    await renderQueue();
    renderStatus();
    if (navigator.onLine) {
      syncNow();
    }
  }

  // ---- conflicts and refusals ------------------------------------------------------------

  /** Send a conflicting transition again on the hazard's current version (new key). */
  async function retryOnCurrent(item) {
    const got = await call(`/api/hazards/${item.hazardId}`,
                           {headers: {Accept: "application/json", ...asUser(item.user)}});
    if (!got.ok) {
      message("无法读取隐患的当前状态，请联网后再试", true);
      return;
    }
    if (!(got.body.allowed_transitions || []).includes(item.body.to)) {
      message(`${item.hazardCode} 现为「${got.body.status_name}」，该操作已不适用；` +
              "可放弃此记录", true);
      return;
    }
    item.version = got.body.version;
    item.round = (item.round || 0) + 1;
    Object.assign(item, {state: "pending", error: null, nextAt: 0, attempts: 0});
    await queuePut(item);
    await syncNow();
  }

  /** A refused hazard or visit opened in its form, to be corrected and sent again. */
  function edit(item) {
    const kind = item.kind;
    const form = $(`fm-${kind}-form`);
    const body = item.body;
    form.reset();
    if (kind === "hazard") {
      form.category.value = body.category;
      form.level.value = body.level;
      form.description.value = body.description || "";
    } else {
      const recheck = body.hazard_id ? {id: body.hazard_id, code: `#${body.hazard_id}`} : null;
      openVisit({enterprise: body.enterprise, kind: body.kind, hazard: recheck});
      form.note.value = body.note || "";
      form.findings.value = body.findings || "";
    }
    const [lon, lat] = body.location.coordinates;
    app.points[kind] = {lon, lat, accuracy: body.accuracy_m != null ? body.accuracy_m : null};
    showPoint(kind);
    app.editing[kind] = item.id;  // after openVisit, which forgets any correction
    showView(kind);
    message(`修改后保存，重新提交：${item.error ? item.error.message : ""}`, false, "edit");
  }

  /** The refused item being corrected in ``kind``'s form, with the new ``body``; or null.
   *
   * The body changed, so the item is sent under a new Idempotency-Key (``<id>-r<n>``); the
   * refused request stored nothing.  The day found and the time of a visit stay as captured.
   */
  async function edited(kind, body) {
    const item = app.editing[kind] && await queueGet(app.editing[kind]);
    if (!item || item.state !== "failed" || item.user !== userName()) {
      return null;
    }
    for (const key of ["found_date", "occurred_at"]) {
      if (key in item.body) {
        body[key] = item.body[key];
      }
    }
    return Object.assign(item, {body, state: "pending", error: null, attempts: 0, nextAt: 0,
                                round: (item.round || 0) + 1});
  }

  async function discard(item) {
    const items = await queueAll();
    for (const child of items.filter((i) => i.parent === item.id)) {
      await queueDelete(child.id);
    }
    await queueDelete(item.id);
    await renderQueue();
    renderStatus();
  }

  // ---- rendering -------------------------------------------------------------------------

  function findHazard(id) {
    return ((app.bundle || {}).hazards || []).find((h) => h.id === id);
  }

  function card(titleText, metaParts, className) {
    const li = el("li", null, "fm-card" + (className ? " " + className : ""));
    li.append(el("div", titleText, "fm-title"));
    const meta = el("div", null, "fm-meta");
    for (const part of metaParts) {
      meta.append(typeof part === "string" ? document.createTextNode(part + " ") : part);
    }
    li.append(meta);
    return li;
  }

  // The hazard's photos as thumbnails linking to the full photo (same-origin, behind the
  // login); the tag (整改前/整改后/走访) is the image's alt text, set as an attribute.
  function photoStrip(photos) {
    const strip = el("div", null, "fm-photos");
    for (const p of photos) {
      const link = document.createElement("a");
      link.href = p.url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = document.createElement("img");
      img.src = p.thumbnail_url;
      img.alt = PHOTO_TAGS[p.tag] || p.tag;
      img.loading = "lazy";
      link.append(img);
      strip.append(link);
    }
    return strip;
  }

  function renderList() {
    const bundle = app.bundle || {};
    const hazards = bundle.hazards || [];
    const list = $("fm-hazards");
    list.replaceChildren();
    for (const h of hazards) {
      const tags = [];
      if (h.overdue) {
        tags.push(el("span", "逾期", "fm-tag fm-late"));
      }
      if (h.level === "major") {
        tags.push(el("span", "重大", "fm-tag fm-major"));
      }
      const li = card(`${h.code} ${h.category}`, [
        ...tags, el("span", h.status_name || h.status, "fm-tag"),
        h.deadline ? `期限 ${h.deadline}` : "无期限",
        h.grid ? `网格 ${h.grid.code}` : "", h.enterprise ? h.enterprise.name : ""],
        h.overdue ? "fm-overdue" : "");
      li.dataset.hazard = h.id;
      if (h.description) {
        li.append(el("div", h.description, "fm-meta"));
      }
      if ((h.photos || []).length) {
        li.append(photoStrip(h.photos));
      }
      const actions = el("div", null, "fm-actions");
      if ((h.allowed_transitions || []).length) {
        actions.append(button("办理", () => openMove(h)));
      }
      li.append(actions);
      list.append(li);
    }
    $("fm-n-hazards").textContent = hazards.length;

    const due = bundle.visits_due || [];
    const dueList = $("fm-due");
    dueList.replaceChildren();
    for (const d of due) {
      const ent = d.enterprise || {};
      const late = d.status === "overdue";
      const li = card(ent.name || ent.credit_code, [
        late ? el("span", "逾期", "fm-tag fm-late") : "",
        el("span", d.kind_name || KINDS[d.kind] || d.kind, "fm-tag"),
        `${d.current}：${d.done}/${d.times}`, ent.grid ? `网格 ${ent.grid}` : ""],
        late ? "fm-overdue" : "");
      const actions = el("div", null, "fm-actions");
      actions.append(button(KINDS[d.kind] || "走访",
                            () => openVisit({enterprise: ent.credit_code, kind: d.kind})));
      li.append(actions);
      dueList.append(li);
    }
    $("fm-n-due").textContent = due.length;

    const rechecks = bundle.rechecks_due || [];
    const recheckList = $("fm-rechecks");
    recheckList.replaceChildren();
    for (const r of rechecks) {
      const li = card(`${r.code} ${r.category}`, [
        `应于 ${r.recheck_due_on} 回头看`, r.grid ? `网格 ${r.grid.code}` : "",
        r.enterprise ? r.enterprise.name : ""]);
      const actions = el("div", null, "fm-actions");
      actions.append(button("回头看", () => openVisit({kind: "recheck", hazard: r})));
      li.append(actions);
      recheckList.append(li);
    }
    $("fm-n-rechecks").textContent = rechecks.length;
    $("fm-updated").textContent = bundle.fetched_at ?
      `数据更新于 ${new Date(bundle.fetched_at).toLocaleString()}` : "尚无离线数据，请联网打开一次";
    const user = (app.session || {}).user;
    $("fm-who").textContent = user ? `${user.display_name || user.name}（${user.role}）` : "";
    $("fm-logout").hidden = !user;
  }

  function fillEnterprises() {
    const select = document.querySelector("#fm-visit-form select[name=enterprise]");
    const keep = select.value;
    select.replaceChildren(el("option", "—"));
    select.firstChild.value = "";
    for (const e of (app.bundle || {}).enterprises || []) {
      const option = el("option", e.name);
      option.value = e.credit_code;
      select.append(option);
    }
    select.value = keep;
  }

  function fillCategories() {
    const select = document.querySelector("#fm-hazard-form select[name=category]");
    if (select.options.length > 1 || !app.session) {
      return;
    }
    select.replaceChildren(el("option", "请选择"));
    select.firstChild.value = "";
    for (const c of app.session.categories || []) {
      const option = el("option", c);
      option.value = c;
      select.append(option);
    }
    const asked = document.querySelector("#fm-visit-form select[name=request_category]");
    for (const c of app.session.request_categories || []) {
      const option = el("option", c);
      option.value = c;
      asked.append(option);
    }
  }

  function openVisit({enterprise, kind, hazard}) {
    const form = $("fm-visit-form");
    form.reset();
    app.editing.visit = null;  // a new record, never a correction of a refused one
    form.kind.value = kind || "visit";
    form.enterprise.value = enterprise || (hazard && hazard.enterprise &&
                                           hazard.enterprise.credit_code) || "";
    form.hazard_id.value = hazard ? hazard.id : "";
    const of = document.querySelector(".fm-recheck-of");
    of.hidden = !hazard;
    of.textContent = hazard ? `回头看：${hazard.code}` : "";
    showView("visit");
  }

  function openMove(hazard) {
    const form = $("fm-move-form");
    form.reset();
    form.hazard.value = hazard.id;
    $("fm-move-code").textContent = hazard.code;
    $("fm-move-state").textContent = `当前：${hazard.status_name || hazard.status}` +
      `（版本 ${hazard.version}）`;
    const states = (app.session || {}).states || {};
    form.to.replaceChildren();
    for (const target of hazard.allowed_transitions || []) {
      const option = el("option", `→ ${states[target] || target}`);
      option.value = target;
      form.to.append(option);
    }
    toggleDeadline();
    showView("move");
  }

  function toggleDeadline() {
    const form = $("fm-move-form");
    form.querySelector(".fm-deadline").hidden = form.to.value !== "rectifying";
  }

  function describe(item) {
    if (item.kind === "hazard") {
      return `隐患 ${item.body.category}`;
    }
    if (item.kind === "visit") {
      return `${KINDS[item.body.kind] || item.body.kind}`;
    }
    if (item.kind === "request") {
      return `诉求 ${item.body.category}`;
    }
    if (item.kind === "transition") {
      const states = (app.session || {}).states || {};
      return `办理 ${item.hazardCode} → ${states[item.body.to] || item.body.to}`;
    }
    return item.tag === "visit" ? "走访照片" : "隐患照片";
  }

  async function renderQueue() {
    const items = (await queueAll()).sort((a, b) => a.seq - b.seq);
    const byId = new Map(items.map((i) => [i.id, i]));
    // Redrawn only when something changed: sync runs every second, and a button must not
    // be replaced under the user's finger.
    const signature = JSON.stringify([userName(), items.map(
      (i) => [i.id, i.state, i.attempts, i.error && i.error.code])]);
    if (signature === app.queueSignature) {
      return;
    }
    app.queueSignature = signature;
    const list = $("fm-queue");
    list.replaceChildren();
    for (const item of items) {
      const li = card(describe(item), [el("span", STATE_TEXT[item.state], "fm-tag"),
                                       new Date(item.createdAt).toLocaleString()],
                      "fm-state-" + item.state);
      li.dataset.id = item.id;
      li.dataset.state = item.state;
      const mine = item.user === userName();
      const body = (mine && item.body) || {};
      for (const text of [body.description || body.note, body.findings]) {
        if (text) {
          li.append(el("div", text, "fm-meta"));
        }
      }
      if (mine && item.kind === "photo" && item.blob) {
        const thumbs = el("div", null, "fm-thumbs");
        const img = el("img");
        img.alt = "待上传照片";
        img.src = URL.createObjectURL(item.blob);
        img.onload = () => URL.revokeObjectURL(img.src);
        thumbs.append(img);
        li.append(thumbs);
      }
      if (!mine) {
        li.append(el("div", `由 ${item.user} 记录：${item.user} 登录后才会上传`, "fm-meta"));
      }
      const parent = item.parent && byId.get(item.parent);
      if (mine && item.state === "pending" && parent &&
          (parent.state === "conflict" || parent.state === "failed")) {
        // Never sent while its hazard or visit is refused; said, so it does not look stuck.
        li.append(el("div", `等待「${describe(parent)}」：该记录未能同步，处理后才会上传；` +
                     "放弃它将一并放弃此项", "fm-meta fm-blocked"));
      }
      if (mine && item.error && item.state !== "pending") {
        const lead = item.state === "conflict" ?
          "冲突：桌面端已修改此隐患，其修改保留；您的输入保存在此。" : "服务器拒绝：";
        li.append(el("div", `${lead}${item.error.message}`, "fm-error-text"));
        const actions = el("div", null, "fm-actions");
        if (item.kind === "transition" && item.state === "conflict") {
          actions.append(button("按最新版本重试", () => retryOnCurrent(item)));
        }
        if ((item.kind === "hazard" || item.kind === "visit") && item.state === "failed") {
          actions.append(button("修改后重发", () => edit(item)));
        }
        actions.append(button("放弃", () => discard(item)));
        li.append(actions);
      } else if (item.error) {
        li.append(el("div", `${item.error.message}，第 ${item.attempts} 次尝试后等待重试`,
                     "fm-meta"));
      }
      list.append(li);
    }
    const open = items.filter((i) => i.state !== "done").length;
    $("fm-pending").textContent = open;
    // Said once per change, so a later message (e.g. about a retry) is not overwritten.
    const problems = items.filter((i) => i.state === "conflict" || i.state === "failed").length;
    if (problems !== app.problems) {
      app.problems = problems;
      if (problems) {
        message(`${problems} 条记录未能同步（冲突或被拒绝），请在「队列」中处理`, true, "queue");
      } else if ($("fm-msg").dataset.kind === "queue") {
        message("");
      }
    }
  }

  function renderStatus() {
    const net = $("fm-net");
    const online = navigator.onLine;
    net.textContent = app.loggedOut ? "请登录" : (online ? "在线" : "离线");
    net.classList.toggle("fm-offline", !online || Boolean(app.loggedOut));
    if (app.loggedOut) {
      const box = $("fm-msg");
      box.dataset.kind = "login";
      box.replaceChildren(document.createTextNode(app.leftByUser ?
        "已退出登录。您未上传的记录仍保存在本机，下次登录后上传。" :
        "登录已过期，记录仍保存在本机。"));
      const link = el("a", app.leftByUser ? "登录" : "重新登录");
      link.href = CONFIG.loginUrl;
      box.append(link);
      box.hidden = false;
    }
  }

  function renderParks() {
    const select = $("fm-park");
    const parks = (app.session || {}).parks || [];
    select.replaceChildren();
    for (const p of parks) {
      const option = el("option", p.name || p.code);
      option.value = p.code;
      select.append(option);
    }
    select.hidden = parks.length < 2;
    select.value = app.park || "";
  }

  function renderMap() {
    if (!window.L || $("fm-view-map").hidden) {
      return;
    }
    if (!app.map) {
      app.map = L.map("fm-map", {zoomControl: true, attributionControl: false, maxZoom: 20});
      app.layers = {grids: L.featureGroup().addTo(app.map),
                    hazards: L.featureGroup().addTo(app.map),
                    picked: L.featureGroup().addTo(app.map)};
      app.map.on("click", (e) => {
        if (!app.picking) {
          return;
        }
        const kind = app.picking;
        app.points[kind] = {lon: e.latlng.lng, lat: e.latlng.lat, accuracy: null};
        app.picking = null;
        app.layers.picked.clearLayers();
        L.circleMarker(e.latlng, {radius: 8, color: "#1f3a93"}).addTo(app.layers.picked);
        $("fm-map-hint").textContent = "已选点";
        showPoint(kind);
        showView(kind);
      });
    }
    app.map.invalidateSize();
    const bundle = app.bundle || {};
    app.layers.grids.clearLayers();
    app.layers.hazards.clearLayers();
    if (bundle.grids) {
      L.geoJSON(bundle.grids, {style: {
        color: "#1f3a93", weight: 2, fillOpacity: 0.08}}).eachLayer((layer) => {
        const p = layer.feature.properties || {};
        // tooltips get DOM nodes, never HTML strings
        layer.bindTooltip(el("span", `${p.code || ""} ${p.name || ""}`));
        app.layers.grids.addLayer(layer);
      });
    }
    for (const e of bundle.enterprises || []) {
      L.circleMarker([e.lat, e.lon], {radius: 4, color: "#555", weight: 1,
                                      interactive: false}).addTo(app.layers.hazards);
    }
    for (const h of bundle.hazards || []) {
      L.circleMarker([h.lat, h.lon], {radius: 6, color: h.overdue ? "#c0392b" : "#e67e22",
                                      interactive: false}).addTo(app.layers.hazards);
    }
    const bounds = app.layers.grids.getBounds();
    if (bounds.isValid() && !app.fitted) {
      app.map.fitBounds(bounds);
      app.fitted = true;
    } else if (!app.fitted) {
      app.map.setView([0, 0], 2);
    }
  }

  function renderAll() {
    renderList();
    fillEnterprises();
    fillCategories();
    renderMap();
  }

  function showView(name) {
    for (const view of document.querySelectorAll(".fm-view")) {
      view.hidden = view.id !== "fm-view-" + name;
    }
    for (const tab of document.querySelectorAll(".fm-tabs button")) {
      if (tab.dataset.view === name) {
        tab.setAttribute("aria-current", "page");
      } else {
        tab.removeAttribute("aria-current");
      }
    }
    if (name === "map") {
      renderMap();
    }
    if (name === "list" || name === "queue") {
      app.editing = {hazard: null, visit: null};  // a correction left unsaved stays refused
      if ($("fm-msg").dataset.kind === "edit") {
        message("");
      }
    }
    reloadWhenIdle();
    if (name === "queue") {
      renderQueue();
    }
  }

  // ---- start -------------------------------------------------------------------------------

  async function start() {
    for (const tab of document.querySelectorAll(".fm-tabs button")) {
      tab.addEventListener("click", () => showView(tab.dataset.view));
    }
    for (const where of document.querySelectorAll(".fm-where")) {
      const kind = where.dataset.form;
      where.querySelector(".fm-gps").addEventListener("click", () => locate(kind));
      where.querySelector(".fm-pick").addEventListener("click", () => pick(kind));
      showPoint(kind);
    }
    $("fm-hazard-form").addEventListener("submit", (e) => run(submitHazard(e)));
    $("fm-visit-form").addEventListener("submit", (e) => run(submitVisit(e)));
    $("fm-move-form").addEventListener("submit", (e) => run(submitMove(e)));
    $("fm-move-form").to.addEventListener("change", toggleDeadline);
    $("fm-logout").addEventListener("click", () => run(logout()));
    $("fm-sync").addEventListener("click", async () => {
      for (const item of await queueAll()) {
        if (item.state === "pending") {
          item.nextAt = 0;
          await queuePut(item);
        }
      }
      syncNow();
    });
    $("fm-park").addEventListener("change", async (e) => {
      app.park = e.target.value;
      app.fitted = false;
      await kvPut("park", app.park);
      app.bundle = (await kvGet(bundleKey(app.park))) || null;
      renderAll();
      loadBundle();
    });
    window.addEventListener("online", () => {
      app.checkedAt = 0;  // check the server's version before the first send
      renderStatus();
      run(wakeUp());
    });
    window.addEventListener("offline", renderStatus);

    // Offline first: draw what IndexedDB holds, then ask the network.
    app.session = (await kvGet("session")) || null;
    app.park = (await kvGet("park")) || null;
    if (navigator.onLine) {
      await refreshSession();
    }
    await choosePark();
    renderParks();
    renderAll();
    await renderQueue();
    renderStatus();
    if ("serviceWorker" in navigator) {
      try {
        await navigator.serviceWorker.register(CONFIG.swUrl, {scope: CONFIG.scope});
      } catch (exc) {
        console.warn("service worker not registered", exc);
      }
    }
    app.ready = true;
    if (navigator.onLine) {
      await loadBundle();
      syncNow();
    }
    schedule();
  }

  /** Back online: every waiting item is due now (no need to wait out its backoff). */
  async function wakeUp() {
    for (const item of await queueAll()) {
      if (item.state === "pending" && item.nextAt) {
        item.nextAt = 0;
        await queuePut(item);
      }
    }
    await syncNow();
  }

  function run(promise) {
    promise.catch((exc) => {
      app.lastError = String(exc && exc.message || exc);
      message(`出错：${app.lastError}`, true);
    });
  }

  app.syncNow = syncNow;
  app.enqueue = enqueue;
  app.queueAll = queueAll;
  app.loadBundle = loadBundle;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => run(start()));
  } else {
    run(start());
  }
}());
