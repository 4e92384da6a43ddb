"""Idempotency keys: a retried create or transition is answered, never done twice.

A client (the phone's sync queue above all) sends ``Idempotency-Key: <1-64
of A-Za-z0-9_->`` with a write.  The first request's answer is stored with
the user, the key, the method and path and the SHA-256 of the body **in the
same transaction as the write** (:func:`remember`), so either both are
stored or neither is.  A retry by the same user with the same key:

* same method, path and body → the stored status and JSON again
  (``Idempotent-Replayed: true``), nothing is written;
* anything else → 422 ``idempotency_key_reused``.

Keys are per user: another user's request with the same key is a new
request.  Only successful answers are stored; a refused request wrote
nothing and may be retried as it is.  Stored answers are kept until
:func:`prune` (``gridmap prune-idempotency-keys``) removes old ones: a phone's
queue retries within hours or days, so 30 days is plenty.  Two requests racing with one key are
settled by ``UNIQUE(user_id, key)``: the loser's transaction is rolled back
and it answers with the winner's stored response.
"""

import hashlib
import json
import re

import sqlalchemy as sa

from geodata.errors import BadRequestError, ValidationError
from geodata.models import IdempotencyRecord

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Response headers stored and replayed with the body.
REPLAYED_HEADERS = ("ETag", "Location")


def check_key(value):
    """Return the header value if it is a valid key, else raise 400 ``invalid_idempotency_key``."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise BadRequestError("Idempotency-Key must be 1-64 characters of A-Z a-z 0-9 _ -",
                              code="invalid_idempotency_key",
                              details={"header": "Idempotency-Key"})
    return value


def request_hash(method_path, parts):
    """SHA-256 (hex) of the method and path and the body ``parts`` (bytes, in order)."""
    digest = hashlib.sha256(method_path.encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def find(session, user_id, key):
    """Return the stored record of ``key`` for the user, or None."""
    return session.execute(sa.select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
    ).scalar_one_or_none()


def replay(record, method_path, digest):
    """Return ``(status, body, headers)`` stored for a retry of the same request.

    Raises
    ------
    ValidationError
        422 ``idempotency_key_reused`` when the key was used for another
        request (other method, path or body).
    """
    if record.method_path != method_path or record.request_hash != digest:
        raise ValidationError(
            "this Idempotency-Key was used for a different request; use a new key for a new "
            "request", code="idempotency_key_reused",
            details={"header": "Idempotency-Key", "first_request": record.method_path})
    stored = json.loads(record.response)
    return record.status, stored["body"], stored["headers"]


def remember(session, user_id, key, method_path, digest, status, body, headers):
    """Store the answer of a request, in the caller's (write) transaction."""
    kept = {k: headers[k] for k in REPLAYED_HEADERS if k in headers}
    session.add(IdempotencyRecord(
        user_id=user_id, key=key, method_path=method_path[:300], request_hash=digest,
        status=status, response=json.dumps({"body": body, "headers": kept},
                                           ensure_ascii=False)))
    session.flush()


def prune(session, older_than):
    """Delete stored answers created before ``older_than`` (aware datetime); return how many."""
    result = session.execute(sa.delete(IdempotencyRecord).where(
        IdempotencyRecord.created_at < older_than))
    return result.rowcount
