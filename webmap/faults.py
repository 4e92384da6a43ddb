"""A test-only fault switch: lose the answer of some API writes after they have committed.

The field app's queue must survive the worst network failure for a write:
the server stored the item but the phone never heard back, so it sends the
same request again.  ``GRIDMAP_FAULT_DROP_RESPONSE_RATE`` (0..1) replaces
that share of the answers to ``POST /api/...`` by an empty ``502`` *after*
the view has committed, as a proxy that lost its upstream connection would.
The draws come from ``random.Random(GRIDMAP_FAULT_SEED)``, so a run is
repeatable for a given request order.

The switch is armed only when the app is created for tests (``TESTING``)
or with ``GRIDMAP_FAULTS_ENABLED=1``; otherwise the rate is ignored, so a
stray environment variable cannot make production lose answers.
"""

import random
import threading

from flask import request

#: Responses replaced since the app started, for tests and the benchmark's log.
DROPPED = "gridmap.faults.dropped"


def init_app(app):
    """Register the drop hook on ``app`` when the switch is armed and the rate is above 0."""
    settings = app.config["GRIDMAP"]
    armed = app.testing or settings.faults_enabled
    rate = settings.fault_drop_response_rate
    if not armed or rate <= 0:
        return
    draws = random.Random(settings.fault_seed)
    lock = threading.Lock()  # waitress serves requests from several threads
    app.extensions[DROPPED] = 0
    app.logger.warning("fault switch armed: dropping %.0f%% of POST /api/ answers", rate * 100)

    @app.after_request
    def _drop_answer(response):
        if request.method != "POST" or not request.path.startswith("/api/"):
            return response
        with lock:
            drop = draws.random() < rate
            if drop:
                app.extensions[DROPPED] += 1
        if not drop:
            return response
        lost = app.response_class(b"", status=502)
        lost.headers["X-Gridmap-Fault"] = "dropped-response"
        return lost
