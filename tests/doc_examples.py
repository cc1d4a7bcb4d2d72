"""The complete programs in docs/library.md, for the tests that count and run them.

A program is the first fenced ``python`` block after a line
``<!-- example: NAME -->``.
"""

from __future__ import annotations

import re
from pathlib import Path

LIBRARY_DOC = Path(__file__).resolve().parent.parent / "docs" / "library.md"


def example(name: str, doc: Path = LIBRARY_DOC) -> str:
    """The source of example ``name``; :raises LookupError: no such example."""
    match = re.search(rf"^<!-- example: {re.escape(name)} -->\n```python\n(.*?)^```$",
                      doc.read_text(), re.MULTILINE | re.DOTALL)
    if match is None:
        raise LookupError(f"{doc}: no python block after '<!-- example: {name} -->'")
    return match.group(1)


def code_lines(source: str) -> int:
    """Lines that are neither blank nor comments."""
    return sum(1 for line in source.splitlines()
               if line.strip() and not line.strip().startswith("#"))
