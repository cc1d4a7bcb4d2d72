"""``file://`` publisher: JSON lines with size-based rotation."""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, ClassVar

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import OptionSpec, Publisher, integer, redact_url
from zkpoll.sample import Sample

__all__ = ["FilePublisher"]


def _path_from_url(url: urllib.parse.SplitResult) -> str:
    host = url.netloc
    if host in ("", "localhost"):
        path = url.path
    elif host in (".", ".."):
        path = host + url.path
    else:
        raise ConfigError(
            f"publisher URL {redact_url(url)!r}: a file URL cannot name the host {host!r}; "
            f"write file:///abs/path for an absolute path or file:rel/path for a relative one")
    if not path or path.endswith("/"):
        raise ConfigError(f"publisher URL {redact_url(url)!r} names no file")
    return urllib.parse.unquote(path)


class FilePublisher(Publisher):
    """Append each sample as one JSON line (``Sample.as_dict()``) to a file.

    URL forms:

    - ``file:///var/lib/zkpoll/samples.jsonl`` (or ``file://localhost/...``):
      an absolute path;
    - ``file:samples.jsonl``, ``file:./out/samples.jsonl`` or
      ``file://./out/samples.jsonl``: relative to the agent's working directory.

    Any other host is rejected: ``file://var/log/x`` is ambiguous.  Percent
    escapes are decoded (``%20`` for a space).  The parent directory is
    created on the first write.

    Options: ``max_bytes`` (default 100 MiB; 0 never rotates) and
    ``backup_count`` (default 5).  Like ``logging.RotatingFileHandler``, a line
    that would take the file over ``max_bytes`` first rotates it: PATH becomes
    PATH.1, PATH.1 becomes PATH.2 ... up to PATH.<backup_count>; with
    ``backup_count=0`` the file is truncated instead.  Lines are never split.
    Each batch is flushed.  One publisher per file: several processes
    writing (and rotating) one file would corrupt it.
    """

    OPTIONS: ClassVar[OptionSpec] = {"max_bytes": (integer(0), 100 * 2**20),
               "backup_count": (integer(0, 1000), 5)}

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        self.path = _path_from_url(url)
        self.max_bytes: int = self.options["max_bytes"]
        self.backup_count: int = self.options["backup_count"]
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Append ``samples`` and flush; an I/O error loses the lines not yet
        written (no spool: counted as ``write_failed``, degraded at once)."""
        lines = [f"{line}\n".encode() for line in self._encode(samples)]
        if not lines:
            return
        written = 0
        error: OSError | None = None
        with self._lock:
            try:
                for file, chunk in self._chunks(lines):
                    file.write(b"".join(chunk))
                    file.flush()
                    written += len(chunk)
            except OSError as exc:
                self._close_file()
                error = exc
        self._batch_done(written, len(lines) - written,
                         f"cannot write {self.path}: {error}; samples lost", "write_failed")

    def close(self, timeout: float = 5.0) -> None:
        """Close the file (every batch is already flushed)."""
        with self._lock:
            self._close_file()

    def _chunks(self, lines: list[bytes]) -> Iterator[tuple[BinaryIO, list[bytes]]]:
        """Split ``lines`` at rotation points, rotating between the chunks."""
        file = self._file or self._open()
        chunk: list[bytes] = []
        for line in lines:
            if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                if chunk:
                    yield file, chunk
                    chunk = []
                file = self._rotate()
            chunk.append(line)
            self._size += len(line)
        if chunk:
            yield file, chunk

    def _open(self, mode: str = "a+b") -> BinaryIO:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        file = self._file = open(self.path, mode)  # noqa: SIM115 - kept open across batches
        self._size = os.fstat(file.fileno()).st_size
        if self._size and os.pread(file.fileno(), 1, self._size - 1) != b"\n":
            file.write(b"\n")  # end a line cut short by an earlier failure
            self._size += 1
        return file

    def _close_file(self) -> None:
        """Close the file; every batch was flushed, so a failure here loses nothing."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    def _rotate(self) -> BinaryIO:
        self._close_file()
        if not self.backup_count:
            return self._open("wb")
        for index in range(self.backup_count - 1, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        return self._open()
