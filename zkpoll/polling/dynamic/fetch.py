"""What dynamic pollsters read: an HTTP GET or a local command, and its parsing.

Both are bounded: a deadline covers the whole request or command (not just
each socket operation), a command that overruns is killed with its whole
process group, and an answer over :data:`MAX_BYTES` is refused.
Failures raise :class:`~zkpoll.exceptions.PluginError` with the URL or
command and the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from zkpoll.exceptions import PluginError
from zkpoll.version import __version__

__all__ = ["MAX_BYTES", "http_get", "parse_response", "run_command"]

#: Largest answer read from a URL or a command, in bytes.
MAX_BYTES = 16 * 2**20
_CHUNK = 64 * 1024


def http_get(url: str, headers: Mapping[str, str], timeout: float) -> str:
    """GET ``url`` and return its body as text, all within ``timeout`` seconds.

    :raises PluginError: no answer, a status other than 2xx, a body over
        MAX_BYTES, or the deadline passed.
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={
        "User-Agent": f"zkpoll/{__version__}", "Accept": "application/json, */*",
        **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise PluginError(f"GET {url}: answer larger than {MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise PluginError(f"GET {url}: no complete answer within {timeout:.1f}s")
                chunks.append(chunk)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        raise PluginError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise PluginError(f"GET {url}: {exc.reason}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets
        raise PluginError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    return b"".join(chunks).decode(charset, "replace")


def run_command(command: str, timeout: float) -> str:
    """Run ``command`` with ``/bin/sh`` and return its standard output.

    The command runs in its own session; past ``timeout`` seconds the whole
    process group is killed.  :raises PluginError: it could not start,
    exited with a non-zero status (the message holds the end of its
    standard error), overran, or wrote more than MAX_BYTES.
    """
    try:  # an operator's shell command, as in Ceilometer
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise PluginError(f"command {command!r}: cannot start: {exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise PluginError(f"command {command!r} did not finish within {timeout:.1f}s; "
                          "killed") from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-300:]
        raise PluginError(f"command {command!r} exited with status {proc.returncode}"
                          + (f": {tail}" if tail else ""))
    if len(out) > MAX_BYTES:
        raise PluginError(f"command {command!r}: output larger than {MAX_BYTES} bytes")
    return out.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.kill()
    proc.communicate()


def _xml_value(element: ET.Element) -> Any:
    """xmltodict's shape: attributes as ``@name``, repeated children as lists."""
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text or None
    value: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        item = _xml_value(child)
        if child.tag not in value:
            value[child.tag] = item
        elif isinstance(value[child.tag], list):
            value[child.tag].append(item)
        else:
            value[child.tag] = [value[child.tag], item]
    if text:
        value["#text"] = text
    return value


def _parse_xml(text: str) -> Any:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("DTDs and entities are not accepted")
    root = ET.fromstring(text)  # no DTD, so no entity expansion
    return {root.tag: _xml_value(root)}


_PARSERS = {
    "json": json.loads,
    "xml": _parse_xml,
    "text": lambda text: [{"out": text}],
}


def parse_response(text: str, handlers: Sequence[str], what: str) -> Any:
    """Parse ``text`` with the first of ``handlers`` (json, xml, text) that accepts it.

    :raises PluginError: no handler accepts it; ``what`` names the URL or command.
    """
    reasons = []
    for handler in handlers:
        try:
            return _PARSERS[handler](text)
        except (ValueError, ET.ParseError) as exc:
            reasons.append(f"{handler}: {exc}")
    raise PluginError(f"{what}: cannot parse the answer ({'; '.join(reasons)}): "
                      f"{text[:120]!r}")
