"""JSONL files: strict reading of inputs, and append-only result logs that survive a kill mid-write.

Inputs (corpora, items, facts) are read strictly: a bad line is the user's to fix, so the error names the file,
the line number and what was expected. Result logs (PRS, eval) are written one fsynced line per record; a kill
can leave one cut line at the end, which readers skip (that record simply runs again) and the next append
isolates with a newline so it stays readable.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

log = logging.getLogger(__name__)


def _parsed_lines(path: str | os.PathLike, errors: str = "strict") -> Iterator[tuple[int, Any | json.JSONDecodeError]]:
    """(line number, parsed value or the decode error) for every non-blank line."""
    with open(path, encoding="utf-8", errors=errors) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, e


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = (), what: str = "record") -> list[dict[str, Any]]:
    """Every non-blank line of `path` as a dict; a line that is not a JSON object or lacks a `required` key raises
    ValueError naming `path:line`."""
    rows = []
    for n, row in _parsed_lines(path):
        if isinstance(row, json.JSONDecodeError):
            raise ValueError(f"{path}:{n}: not JSON ({row}); each line must be one {what} object")
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a {what} must be a JSON object, got {type(row).__name__}")
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: {what} lacks {missing}; each {what} needs {list(required)}")
        rows.append(row)
    return rows


class AppendOnlyJsonl:
    """A result log: `append` writes whole fsynced lines, `records` yields every readable one in order."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        for n, row in _parsed_lines(self.path, errors="replace"):  # a cut multi-byte char is a cut line too
            if isinstance(row, json.JSONDecodeError):
                log.warning("%s:%d: unreadable line skipped (%s): its record will be redone", self.path, n, row)
            elif isinstance(row, dict):
                yield row

    def append(self, row: dict[str, Any] | str) -> None:
        """Append one record (a dict, or an already serialized JSON object line)."""
        line = (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)).rstrip("\n") + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:  # reads see the file; writes always go to its end
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a previous kill cut the last line: keep this record on a line of its own
                    line = "\n" + line
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
