"""Rate-limit counters every worker shares (a `limits` storage over one SQLite file), and the
client's address: X-Forwarded-For is believed only from a configured proxy."""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from limits.storage import Storage

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SQLiteStorage(Storage):
    """A `limits` storage in one SQLite file (WAL), so the gunicorn workers of one machine count
    together: each hit is one atomic upsert. `sqlite:///relative/path` or `sqlite:////abs/path`.

    Counters are not worth an fsync: synchronous=OFF; a crash loses at most the last window.
    Expired rows are deleted a few at a time as they age, never all counters at once.
    """

    STORAGE_SCHEME = ["sqlite"]
    PURGE_EVERY = 30.0  # seconds between deletions of expired counters (per process)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = urlparse(uri).path
        self.path = Path(path[1:] if path.startswith("/") else path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._purged = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        # one connection per process: a connection must not cross gunicorn's fork
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, "
                         "count INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to the key's counter, starting a new window when the old one expired."""
        now = time.time()
        with self._lock:
            db = self._db()
            (count,) = db.execute(
                "INSERT INTO counters(key, count, expires) VALUES (?1, ?2, ?3) "
                "ON CONFLICT(key) DO UPDATE SET "
                "count = CASE WHEN expires <= ?4 THEN ?2 ELSE count + ?2 END, "
                "expires = CASE WHEN expires <= ?4 THEN ?3 ELSE expires END "
                "RETURNING count", (key, amount, now + expiry, now)).fetchone()
            if now - self._purged > self.PURGE_EVERY:
                self._purged = now
                db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(count)

    def get(self, key: str) -> int:
        """The key's count in its current window (0 once it expired)."""
        with self._lock:
            row = self._db().execute("SELECT count FROM counters WHERE key = ? AND expires > ?",
                                     (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now if it has none)."""
        with self._lock:
            row = self._db().execute("SELECT expires FROM counters WHERE key = ?",
                                     (key,)).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        """True when the file can be read."""
        try:
            with self._lock:
                self._db().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        """Delete every counter."""
        with self._lock:
            return self._db().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        """Delete one counter."""
        with self._lock:
            self._db().execute("DELETE FROM counters WHERE key = ?", (key,))


def default_storage_uri(index_dir: str) -> str:
    """ratelimit.sqlite3 beside the index directory (writable by the service, one per archive)."""
    return "sqlite:///" + str(Path(index_dir).resolve().parent / "ratelimit.sqlite3")


def parse_networks(spec: str) -> list[Network]:
    """'10.0.0.1, 192.168.0.0/16' as networks; a bad entry is a configuration error."""
    nets = []
    for part in spec.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"QA_TRUSTED_PROXIES: {part.strip()!r} is not an address "
                                 "or network") from None
    return nets


def _trusted(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(remote: str | None, forwarded: list[str], proxies: list[Network]) -> str:
    """The client a request comes from: the peer, unless the peer is a trusted proxy; then the
    nearest X-Forwarded-For hop that is not a trusted proxy (hops further left were written by
    the client and could be anything)."""
    remote = remote or "-"
    if not proxies or not _trusted(remote, proxies):
        return remote
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else remote
