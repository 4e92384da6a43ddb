"""Network conditions for a whole Chromium, service workers included, over the DevTools protocol.

``driver.execute_cdp_cmd("Network.emulateNetworkConditions", ...)`` reaches only
the page's DevTools target.  A service worker is a target of its own: what it
fetches (here the shell on a cache miss) still reaches the network while the
page is "offline".  Measured with Chromium 156: after deleting Cache Storage
an "offline" reload still loaded the page through the worker.  DevTools'
own "Offline" box applies to every target, and so does :class:`Network`: it
connects to the browser's DevTools endpoint (``goog:chromeOptions.
debuggerAddress``), attaches to every page and service worker target
(``Target.attachToTarget`` with ``flatten``) and sends the conditions to each
of them; workers started later are attached before they run.  The
connection stays open, since an emulation ends with the session that set it.
"""

import itertools
import json
import threading
import urllib.request

import websocket

#: Puppeteer's "Slow 3G" (``PredefinedNetworkConditions``): 500 kbit/s each way x 0.8,
#: 400 ms RTT x 5.  Throughputs are in bytes per second, latency in ms.
SLOW_3G = {"offline": False, "latency": 2000, "downloadThroughput": 50_000,
           "uploadThroughput": 50_000}
ONLINE = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
OFFLINE = {**ONLINE, "offline": True}


class Network:
    """Set network conditions on every page and service worker of ``driver``'s browser.

    A reader thread takes the browser's messages.  Service workers are
    auto-attached paused (``waitForDebuggerOnStart``), so a worker started
    later, e.g. by a reload after the idle one was stopped, gets the current
    conditions before it runs any code.
    """

    def __init__(self, driver):
        address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen(f"http://{address}/json/version", timeout=10) as r:
            url = json.load(r)["webSocketDebuggerUrl"]
        self._ws = websocket.create_connection(url, timeout=None, suppress_origin=True)
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._answers = {}  # message id -> [Event, answer]
        self.sessions = {}  # sessionId -> target type
        self.conditions = ONLINE
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for target in self.call("Target.getTargets")["targetInfos"]:
            if target["type"] == "page":
                session = self.call("Target.attachToTarget", {
                    "targetId": target["targetId"], "flatten": True})["sessionId"]
                self.sessions[session] = "page"
                self.call("Network.enable", session=session)
        self.call("Target.setAutoAttach", {
            "autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True,
            "filter": [{"type": "service_worker", "exclude": False},
                       {"exclude": True}]})

    def _post(self, method, params=None, session=None):
        message = {"id": next(self._ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        with self._send_lock:
            self._ws.send(json.dumps(message))
        return message["id"]

    def call(self, method, params=None, session=None):
        """Send a DevTools command and wait for its answer."""
        waiter = [threading.Event(), None]
        with self._send_lock:
            ident = next(self._ids)
            self._answers[ident] = waiter
            message = {"id": ident, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            self._ws.send(json.dumps(message))
        if not waiter[0].wait(30):
            raise RuntimeError(f"{method}: no answer from the browser")
        answer = waiter[1]
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def _read(self):
        while True:
            try:
                message = json.loads(self._ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                return
            waiter = self._answers.pop(message.get("id"), None)
            if waiter is not None:
                waiter[1] = message
                waiter[0].set()
            elif message.get("method") == "Target.attachedToTarget":
                params = message["params"]
                session = params["sessionId"]
                self.sessions[session] = params["targetInfo"]["type"]
                # in order, before the paused worker runs: the same network as everyone
                self._post("Network.enable", session=session)
                self._post("Network.emulateNetworkConditions", self.conditions, session)
                self._post("Runtime.runIfWaitingForDebugger", session=session)
            elif message.get("method") == "Target.detachedFromTarget":
                self.sessions.pop(message["params"]["sessionId"], None)

    def apply(self, conditions=None):
        """Send ``conditions`` (default: the last ones) to every page and service worker.

        Returns the target types reached, e.g. ``{"page", "service_worker"}``.
        """
        self.conditions = conditions or self.conditions
        reached = set()
        for session, kind in list(self.sessions.items()):
            try:
                self.call("Network.emulateNetworkConditions", self.conditions, session)
            except RuntimeError:
                continue  # a worker that stopped meanwhile: its successor is auto-attached
            reached.add(kind)
        return reached

    def offline(self):
        """No network for any page or worker."""
        return self.apply(OFFLINE)

    def online(self):
        """Back to an unthrottled network."""
        return self.apply(ONLINE)

    def close(self):
        """Go back online and close the DevTools connection."""
        try:
            self.online()
        finally:
            self._ws.close()
