"""A bounded per-process cache of values that are valid for one stamp of their data.

The park-wide answers (hidden units, the map's grid layer, the coverage
report) cost seconds at 10^5 grids and change only when their data does.
Each is kept under a key (database URL, park, …) with the stamp it was
computed for: a database value the triggers of migrations 0010, 0011 and
0013 renew on every change, whoever writes.  A lookup under another stamp
misses, so a stale entry is never answered; it is replaced when the new
value is put.
"""

import threading


class StampedCache:
    """``{key: (stamp, value)}`` for at most ``size`` keys, thread-safe; the oldest goes first.

    Values are shared by every caller: read them, never change them.
    """

    def __init__(self, size):
        self.size = size
        self._items = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._items)

    def get(self, key, stamp):
        """The value kept for ``key`` at ``stamp``; None when missing, older or ``stamp`` None."""
        if stamp is None:
            return None
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] == stamp else None

    def put(self, key, stamp, value, *, replacing=None):
        """Keep ``value`` for ``key`` at ``stamp`` (nothing when ``stamp`` is None).

        With ``replacing``, only while ``key`` still holds that very object
        (a value derived from it, added later): a newer entry stays.
        """
        if stamp is None:
            return
        with self._lock:
            if replacing is not None:
                hit = self._items.get(key)
                if hit is None or hit[1] is not replacing:
                    return
            self._items.pop(key, None)
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (stamp, value)

    def clear(self):
        """Forget everything (a benchmark's cold request; tests that count)."""
        with self._lock:
            self._items.clear()
