"""Reading text and JSON files the way the RE data sets need.

All text is read as UTF-8 with an optional byte-order mark removed
(``utf-8-sig``) and universal newlines, so CRLF files (SemEval's release) and
files saved by Windows editors read exactly like LF files.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relforge.data.errors import DataFormatError


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataFormatError(path, "is a directory, expected a file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                              record=f"line {line}") from None
    # universal newlines: CRLF and lone CR become LF
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path: Path) -> list[str]:
    text = read_text(path)
    if not text.strip():
        raise DataFormatError(path, "the file is empty")
    return text.split("\n")


def load_json(path: Path) -> Any:
    """One JSON document; a syntax error names the line and column."""
    text = read_text(path)
    if not text.strip():
        raise DataFormatError(path, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                              record=f"line {exc.lineno}") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    lines = read_lines(path)
    seen = False
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        seen = True
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                                  record=f"line {i}") from None
    if not seen:
        raise DataFormatError(path, "the file is empty")


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_label_index(path: Path, what: str = "label -> id") -> list[str]:
    """The labels of a JSON object mapping each label to its index (a
    ``rel2id.json``), in index order."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, f"expected a JSON object {what}")
    return sorted(data, key=lambda k: data[k])
