"""Spool storage candidates measured side by side: sqlite3 (WAL) vs append-only segments.

Both store the same encoded batches (``spool_codec.encode_batch`` of 500
samples each) and are driven the same way: append every batch (one commit
each, under each fsync policy), then read them back oldest first and
acknowledge them.  The segment store is a minimal but crash-correct
candidate (length + CRC32 framed records in 4 MiB files, the acknowledged
position in a small file replaced atomically).  Prints JSON lines::

    {"bench": "spool_storage", "store": "sqlite-wal", "fsync": "os",
     "append_batches_per_s": ..., "append_samples_per_s": ...,
     "drain_samples_per_s": ..., "disk_bytes_per_sample": ..., "reopen_s": ...}
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

from benchmarks._bench_util import emit, load1
from zkpoll.delivery.spool import Spool
from zkpoll.publisher.spool_codec import decode_batch, encode_batch
from zkpoll.sample import Sample

SEGMENT_BYTES = 4 << 20
_HEADER = struct.Struct("<IId")  # length, crc32, oldest


class SegmentStore:
    """Append-only segment files; ``ack`` persists (segment, offset) atomically."""

    def __init__(self, directory: Path, fsync: str) -> None:
        self.dir = directory
        self.fsync = fsync == "always"
        directory.mkdir(parents=True, exist_ok=True)
        self.segments = sorted(int(p.stem) for p in directory.glob("*.seg")) or [0]
        self.current = open(directory / f"{self.segments[-1]:012d}.seg", "ab")  # noqa: SIM115
        ack = directory / "ack"
        self.read_pos = tuple(json.loads(ack.read_text())) if ack.exists() else (0, 0)

    def append(self, body: bytes, oldest: float) -> None:
        if self.current.tell() >= SEGMENT_BYTES:
            self.current.close()
            self.segments.append(self.segments[-1] + 1)
            self.current = open(self.dir / f"{self.segments[-1]:012d}.seg", "ab")  # noqa: SIM115
        self.current.write(_HEADER.pack(len(body), zlib.crc32(body), oldest) + body)
        self.current.flush()
        if self.fsync:
            os.fsync(self.current.fileno())

    def drain(self) -> int:
        """Read every record after the ack position, acking each; return samples."""
        samples = 0
        segment, offset = self.read_pos
        for number in [s for s in self.segments if s >= segment]:
            with open(self.dir / f"{number:012d}.seg", "rb") as handle:
                handle.seek(offset if number == segment else 0)
                while header := handle.read(_HEADER.size):
                    if len(header) < _HEADER.size:
                        break
                    size, crc, _ = _HEADER.unpack(header)
                    body = handle.read(size)
                    if len(body) < size or zlib.crc32(body) != crc:
                        break  # a torn tail
                    samples += len(decode_batch(body))
                    self._ack(number, handle.tell())
        return samples

    def _ack(self, segment: int, offset: int) -> None:
        tmp = self.dir / "ack.tmp"
        tmp.write_text(json.dumps([segment, offset]))
        if self.fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, self.dir / "ack")
        self.read_pos = (segment, offset)

    def close(self) -> None:
        self.current.close()


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def run(store: str, fsync: str, batches: list[bytes], per_batch: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="zkpoll-spool-bench-") as tmp:
        directory = Path(tmp) / "spool"
        began = time.perf_counter()
        if store == "sqlite-wal":
            spool = Spool(directory, fsync)
            for body in batches:
                spool.append(body, per_batch, 0.0)
        else:
            segments = SegmentStore(directory, fsync)
            for body in batches:
                segments.append(body, 0.0)
        appended = time.perf_counter() - began
        on_disk = disk_bytes(directory)
        began = time.perf_counter()
        if store == "sqlite-wal":
            spool.close()
            spool = Spool(directory, fsync)
        else:
            segments.close()
            segments = SegmentStore(directory, fsync)
        reopen = time.perf_counter() - began
        began = time.perf_counter()
        drained = 0
        if store == "sqlite-wal":
            while chunk := spool.head(2000):
                drained += sum(len(decode_batch(body)) for _, body in chunk)
                spool.ack(chunk[-1][0].seq)
            spool.close()
        else:
            drained = segments.drain()
            segments.close()
        drain = time.perf_counter() - began
    total = len(batches) * per_batch
    assert drained == total, (store, drained, total)
    return {"bench": "spool_storage", "store": store, "fsync": fsync, "batches": len(batches),
            "batch_samples": per_batch,
            "append_batches_per_s": round(len(batches) / appended),
            "append_samples_per_s": round(total / appended),
            "drain_samples_per_s": round(total / drain),
            "disk_bytes_per_sample": round(on_disk / total, 1),
            "reopen_s": round(reopen, 4), "load1": load1()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spool_storage_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--fsync-batches", type=int, default=100,
                        help="batches for the fsync=always runs (each costs an fsync)")
    args = parser.parse_args()
    per_batch = 500
    samples = [Sample("bench.meter", "gauge", "B", float(i), f"resource-{i:06d}",
                      timestamp=1.7e9, source="bench", member_id="agent-1", cycle_start=1.7e9)
               for i in range(per_batch)]
    body = encode_batch(samples)[0]
    for fsync, count in (("os", args.batches), ("always", args.fsync_batches)):
        for store in ("sqlite-wal", "segments"):
            emit(**run(store, fsync, [body] * count, per_batch))


if __name__ == "__main__":
    main()
