// Offline once loaded. The page, once its models are running, sends the list of same-origin files it loaded (the app,
// the LiteRT.js build this browser picked, the model files); they are cached and served from the cache whenever the
// network fails. Online, the network comes first, so a re-exported model is picked up.
const CACHE = 'expr3d-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('message', (event) => {
  const urls = (event.data?.cache ?? []).filter((url) => new URL(url).origin === self.location.origin);
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    let ok = true;
    try {
      await cache.addAll(urls);
    } catch (error) {
      ok = false;
    }
    event.source?.postMessage({cached: ok ? urls.length : 0});
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    try {
      return await fetch(request);
    } catch (error) {
      const cached = await caches.match(request, {ignoreSearch: true});
      if (cached) return cached;
      throw error;
    }
  })());
});
