"""The durable spool's storage: batches of encoded items in sqlite3 (WAL).

One directory per publisher holds ``spool.sqlite3`` (one row per accepted
batch, in order) and ``lock`` (held with ``flock`` while a process uses the
spool, so two agents never share one).  A row is written and committed
before :meth:`Spool.append` returns; it is deleted when the sink has
acknowledged it (:meth:`Spool.ack`) or when a bound drops it
(:meth:`Spool.enforce_bounds`).  A restart, also after ``kill -9``, finds
every row not yet acknowledged.  Why sqlite3 and not segment files: see
``docs/design.md`` ("The durable spool") and ``benchmarks/spool_storage_bench.py``.

What to drop when a bound is hit is decided by :func:`plan_drops` (pure).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from zkpoll.exceptions import ConfigError

__all__ = ["FSYNC_POLICIES", "Drops", "Entry", "Spool", "orphaned_spools", "plan_drops"]

#: ``always``: fsync every accepted batch (survives power loss); ``os``: the
#: kernel writes back (survives a crash or kill -9 of the agent, not of the host).
FSYNC_POLICIES = ("always", "os")

_SCHEMA = ("CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
           "oldest REAL NOT NULL, count INTEGER NOT NULL, body BLOB NOT NULL)")


@dataclass(frozen=True)
class Entry:
    """What the spool keeps in memory about one stored batch."""

    seq: int
    count: int     #: samples in the batch
    size: int      #: bytes of the encoded batch
    oldest: float  #: poll time of the batch's oldest sample (epoch seconds)


@dataclass(frozen=True)
class Drops:
    """Batches to drop from the head of the spool, by reason."""

    by_age: int = 0   #: oldest entries older than max_age
    by_size: int = 0  #: then oldest entries while over max_bytes


def plan_drops(entries: Sequence[Entry], total_bytes: int, max_bytes: int,
               max_age: float, now: float) -> Drops:
    """Decide which oldest ``entries`` to drop so the spool honours its bounds.

    ``entries`` are the droppable ones, oldest first (not the batch being
    sent).  First every leading entry whose oldest sample is older than
    ``max_age`` seconds (0: no age bound), then further leading entries while
    the bytes left exceed ``max_bytes`` (0: no size bound).
    """
    by_age = 0
    if max_age > 0:
        while by_age < len(entries) and now - entries[by_age].oldest > max_age:
            total_bytes -= entries[by_age].size
            by_age += 1
    by_size = 0
    if max_bytes > 0:
        while by_age + by_size < len(entries) and total_bytes > max_bytes:
            total_bytes -= entries[by_age + by_size].size
            by_size += 1
    return Drops(by_age, by_size)


def _lock(directory: Path) -> IO[str]:
    """Hold ``directory/lock`` for this process; ConfigError if another holds it."""
    path = directory / "lock"
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while the spool is open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"spool directory {directory} is in use by {holder}: two agents "
                          f"must not share a spool (give each its own [publisher] "
                          f"spool_dir)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


class Spool:
    """An ordered, durable queue of encoded batches in one directory (thread-safe).

    :param directory: created if missing; locked while open
    :param fsync: one of :data:`FSYNC_POLICIES`
    :raises ConfigError: the directory cannot be created or opened, or is locked
    """

    def __init__(self, directory: Path, fsync: str = "os") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ConfigError(f"[publisher] spool_fsync: {fsync!r} is not one of "
                              f"{', '.join(FSYNC_POLICIES)}")
        self.directory = Path(directory)
        self.fsync = fsync
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock(self.directory)
        except OSError as exc:
            raise ConfigError(f"[publisher] spool_dir: cannot use {self.directory}: "
                              f"{exc.strerror or exc}") from exc
        try:
            self._db = sqlite3.connect(self.directory / "spool.sqlite3", isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync == 'always' else 'NORMAL'}")
            self._db.execute(_SCHEMA)
            rows = self._db.execute(
                "SELECT seq, count, length(body), oldest FROM batches ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            self._lock_file.close()
            raise ConfigError(f"[publisher] spool_dir: cannot open the spool in "
                              f"{self.directory}: {exc}") from exc
        _OPEN.add(self.directory.absolute())
        self._mutex = threading.Lock()
        self._entries: collections.deque[Entry] = collections.deque(Entry(*r) for r in rows)
        self._samples = sum(e.count for e in self._entries)
        self._bytes = sum(e.size for e in self._entries)

    # --- state ---------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Samples stored and not acknowledged."""
        return self._samples

    @property
    def size(self) -> int:
        """Bytes of the stored batches (the database file is somewhat larger)."""
        return self._bytes

    @property
    def batches(self) -> int:
        """Batches stored and not acknowledged."""
        return len(self._entries)

    def oldest(self) -> float | None:
        """Poll time of the oldest stored sample, or None when empty."""
        with self._mutex:
            return min((e.oldest for e in self._entries), default=None)

    # --- operations ----------------------------------------------------------
    def append(self, body: bytes, count: int, oldest: float) -> Entry:
        """Store one batch durably (per the fsync policy); return its entry.

        :raises sqlite3.Error: the write failed (disk full, read-only, ...)
        """
        with self._mutex:
            cursor = self._db.execute(
                "INSERT INTO batches (oldest, count, body) VALUES (?, ?, ?)",
                (oldest, count, body))
            entry = Entry(int(cursor.lastrowid or 0), count, len(body), oldest)
            self._entries.append(entry)
            self._samples += count
            self._bytes += entry.size
            return entry

    def head(self, max_samples: int) -> list[tuple[Entry, bytes]]:
        """The oldest batches, up to ``max_samples`` samples (at least one batch)."""
        with self._mutex:
            chosen: list[Entry] = []
            total = 0
            for entry in self._entries:
                if chosen and total + entry.count > max_samples:
                    break
                chosen.append(entry)
                total += entry.count
            if not chosen:
                return []
            rows = dict(self._db.execute(
                "SELECT seq, body FROM batches WHERE seq BETWEEN ? AND ?",
                (chosen[0].seq, chosen[-1].seq)).fetchall())
        return [(entry, rows[entry.seq]) for entry in chosen if entry.seq in rows]

    def ack(self, last_seq: int) -> list[Entry]:
        """Forget every batch up to ``last_seq``; return the entries removed."""
        with self._mutex:
            removed = []
            while self._entries and self._entries[0].seq <= last_seq:
                removed.append(self._entries.popleft())
            self._db.execute("DELETE FROM batches WHERE seq <= ?", (last_seq,))
            self._forget(removed)
            return removed

    def enforce_bounds(self, max_bytes: int, max_age: float, now: float,
                       keep_through: int = 0) -> tuple[list[Entry], list[Entry]]:
        """Drop the oldest batches beyond the bounds (see :func:`plan_drops`).

        Batches with ``seq <= keep_through`` (being sent) are never dropped.
        Returns the entries dropped (by age, by size).
        """
        with self._mutex:
            head = self._entries[0] if self._entries else None
            if head is None or not ((max_bytes and self._bytes > max_bytes)
                                    or (max_age and now - head.oldest > max_age)):
                return [], []
            start = 0
            while start < len(self._entries) and self._entries[start].seq <= keep_through:
                start += 1
            kept = sum(e.size for e in list(self._entries)[:start])
            droppable = list(self._entries)[start:]
            plan = plan_drops(droppable, self._bytes - kept, max_bytes, max_age, now)
            dropped = droppable[:plan.by_age + plan.by_size]
            if not dropped:
                return [], []
            self._db.execute("DELETE FROM batches WHERE seq BETWEEN ? AND ?",
                             (dropped[0].seq, dropped[-1].seq))
            gone = {e.seq for e in dropped}
            self._entries = collections.deque(e for e in self._entries if e.seq not in gone)
            self._forget(dropped)
            return dropped[:plan.by_age], dropped[plan.by_age:]

    def drop(self, seqs: Sequence[int]) -> None:
        """Remove the batches ``seqs`` (unreadable or rejected ones)."""
        with self._mutex:
            gone = set(seqs)
            removed = [e for e in self._entries if e.seq in gone]
            self._entries = collections.deque(e for e in self._entries if e.seq not in gone)
            self._db.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in gone])
            self._forget(removed)

    def _forget(self, removed: Sequence[Entry]) -> None:
        self._samples -= sum(e.count for e in removed)
        self._bytes -= sum(e.size for e in removed)

    def close(self) -> None:
        """Close the database and release the directory lock."""
        with self._mutex, contextlib.suppress(sqlite3.Error):
            self._db.close()
        _OPEN.discard(self.directory.absolute())
        self._lock_file.close()


#: Directories of the spools open in this process.
_OPEN: set[Path] = set()


def _holder_alive(directory: Path) -> bool:
    """Whether a live process (this one: with the spool open) uses ``directory``."""
    try:
        text = (directory / "lock").read_text().split()
        pid = int(text[1]) if len(text) > 1 and text[0] == "pid" else 0
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    if pid == os.getpid():
        return directory.absolute() in _OPEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned_spools(root: Path) -> list[tuple[Path, int]]:
    """Spools under ``root`` that hold samples and that no live process uses:
    (directory, samples).  Read without taking any lock."""
    found = []
    for directory in sorted(p for p in Path(root).glob("*") if p.is_dir()):
        database = directory / "spool.sqlite3"
        if not database.exists() or _holder_alive(directory):
            continue
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                                    timeout=1.0)) as db:
                count = db.execute("SELECT COALESCE(SUM(count), 0) FROM batches").fetchone()[0]
        except sqlite3.Error:
            continue
        if count:
            found.append((directory, int(count)))
    return found
