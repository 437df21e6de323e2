"""Streaming prediction (``relforge predict``): read, score and write batch
by batch, so memory stays flat in the input size and output appears as it
is made. A bad line (not JSON, or not a valid record) is named by file and
line; with ``on_error="stop"`` the run stops there after writing everything
predicted before it, with ``"skip"`` it is counted and reported at the end.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from relforge.data.errors import DataError


@dataclass
class PredictReport:
    written: int = 0
    #: "file:line: reason" of every skipped line
    skipped: list[str] = field(default_factory=list)
    #: the error that stopped the run ("file:line: reason"), or None
    error: str | None = None
    #: records whose head and tail overlap (said, not refused)
    overlapping: int = 0
    #: mention records read (each scored as several pairs) and the pairs they made
    mention_records: int = 0
    mention_pairs: int = 0


def _lines(source: str) -> tuple[Iterator[tuple[int, bytes]], IO[bytes] | None, int | None]:
    """(numbered raw lines, the open file or None, the line count when known).
    Lines are decoded one at a time by the caller, so text that is not UTF-8
    is reported with its line number."""
    if source == "-":
        return ((n, line) for n, line in enumerate(sys.stdin.buffer, 1)), None, None
    path = Path(source)
    with path.open("rb") as fh:  # a quick count for the progress bar (files only)
        total = sum(1 for _ in fh)
    handle = path.open("rb")
    return ((n, line) for n, line in enumerate(handle, 1)), handle, total


def stream_predictions(extractor: Any, source: str, target: str, *, batch_size: int = 32,
                       on_error: str = "stop", window: int = 256) -> PredictReport:
    """Predict ``source`` (a JSON-lines path or ``-``) into ``target`` (a
    path or ``-``), with progress in input lines (:mod:`relforge.progress`).
    Pairs are gathered ``window`` at a time (at least ``batch_size``), ranked
    in length-sorted batches of ``batch_size`` (``Extractor.predict``) and
    written in input order; memory stays bounded by the window."""
    window = max(window, batch_size)
    from relforge import progress as shown

    report = PredictReport()
    name = "<stdin>" if source == "-" else source
    lines, handle, total = _lines(source)
    out = sys.stdout if target == "-" else Path(target).open("w", encoding="utf-8")
    batch: list[Any] = []

    def flush() -> None:
        if batch:
            with shown.hold():
                rows = extractor.predict(batch, batch_size=batch_size)
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            report.written += len(batch)
            out.flush()
            batch.clear()

    try:
        with shown.task("predict", total=total, unit="lines") as task:
            for n, raw in lines:
                task.advance(1)
                try:
                    line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    report.error = f"{name}:{n}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
                    flush()
                    return report
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    examples = extractor.to_pair_examples(rec, path=name, where=f"line {n}", default_id=str(n))
                except (json.JSONDecodeError, DataError) as exc:
                    reason = f"not valid JSON ({exc.msg}, column {exc.colno})" if isinstance(
                        exc, json.JSONDecodeError) else str(exc)
                    message = reason if reason.startswith(name) else f"{name}:{n}: {reason}"
                    if on_error == "stop":
                        flush()
                        report.error = message
                        return report
                    report.skipped.append(message)
                    continue
                if isinstance(rec, dict) and "entities" in rec:
                    report.mention_records += 1
                    report.mention_pairs += len(examples)
                for example in examples:
                    if example.head.start < example.tail.end and example.tail.start < example.head.end:
                        report.overlapping += 1
                batch.extend(examples)
                if len(batch) >= window:
                    flush()
            flush()
    finally:
        if handle is not None:
            handle.close()
        if out is not sys.stdout:
            out.close()
    return report
