"""The ``Idempotency-Key`` header on every create and transition route (decorator).

See :mod:`geodata.services.idempotency` for the contract.  The decorated
view runs as usual; :func:`webmap.db.commit_or_rollback` then leaves its
write transaction open (instead of committing), the view builds its answer,
and this decorator stores that answer beside the write and commits both at
once.  A request without the header is untouched.
"""

import hashlib
from functools import wraps

from flask import current_app, g, request
from sqlalchemy.exc import IntegrityError

from geodata.services import idempotency
from webmap.auth import current_user
from webmap.db import get_session

HEADER = "Idempotency-Key"


class _Pending:
    """The write transaction a keyed request left open for its answer."""

    session = None


def _body_parts():
    # Multipart bodies are hashed field by field: a browser picks a new boundary on each retry.
    if request.mimetype == "multipart/form-data":
        parts = []
        for name in sorted(request.form):
            for value in request.form.getlist(name):
                parts += [name.encode(), value.encode()]
        for name in sorted(request.files):
            for upload in request.files.getlist(name):
                data = upload.read()
                upload.stream.seek(0)
                parts += [name.encode(), (upload.filename or "").encode(),
                          hashlib.sha256(data).digest()]
        return parts
    return [request.get_data(cache=True)]


def _answer(status, body, headers):
    response = current_app.json.response(body)
    response.status_code = status
    for name, value in headers.items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(view):
    """Make a JSON write view answer a retried ``Idempotency-Key`` from the stored answer."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        raw = request.headers.get(HEADER)
        if raw is None:
            return view(*args, **kwargs)
        # Credentials first: an anonymous request is 401 whatever its key (the document's
        # order, and Schemathesis' missing_required_header check).
        user = current_user()
        key = idempotency.check_key(raw)
        method_path = f"{request.method} {request.path}"
        digest = idempotency.request_hash(method_path, _body_parts())
        stored = idempotency.find(get_session(), user.id, key)
        if stored is not None:
            return _answer(*idempotency.replay(stored, method_path, digest))
        pending = g.idempotency = _Pending()
        try:
            response = view(*args, **kwargs)
            session = pending.session
            if session is None or not 200 <= response.status_code < 300:
                return response
            try:
                idempotency.remember(session, user.id, key, method_path, digest,
                                     response.status_code, response.get_json(),
                                     response.headers)
                session.commit()
            except IntegrityError:
                # A concurrent request with this key committed first: undo ours, answer as it did.
                session.rollback()
                stored = idempotency.find(session, user.id, key)
                if stored is None:
                    raise
                return _answer(*idempotency.replay(stored, method_path, digest))
            return response
        except BaseException:
            if pending.session is not None:
                pending.session.rollback()
            raise
        finally:
            g.pop("idempotency", None)

    return wrapper
