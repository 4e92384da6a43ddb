/* The field app's service worker (scope /m/): the app shell from Cache Storage, cache first.
 *
 * The shell list and the cache name are written in by the server; the name carries a hash
 * of the shell's files, so any change to them changes this script, which makes the browser
 * install the new version and drop the old cache.  Data (grids, hazards, the queue) lives
 * in IndexedDB, kept by field.js; API requests are not touched here.
 */
"use strict";
const CACHE = {{ cache|tojson }};
const SHELL = {{ shell|tojson }};
const SHELL_PAGE = SHELL[0];

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    for (const url of SHELL) {
      const response = await fetch(url, {cache: "no-cache", credentials: "same-origin"});
      // A login redirect or an error must never be stored as the app.
      if (!response.ok || response.redirected) {
        throw new Error(`cannot cache ${url}: ${response.status}`);
      }
      await cache.put(url, response);
    }
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("gridmap-field-") && name !== CACHE) {
        await caches.delete(name);
      }
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if (request.mode === "navigate" && url.pathname === SHELL_PAGE) {
    event.respondWith(fromCache(SHELL_PAGE, request));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(fromCache(url.pathname, request));
  }
});

async function fromCache(key, request) {
  const cached = await caches.match(key, {cacheName: CACHE});
  return cached || fetch(request);
}
