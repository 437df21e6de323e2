"""One progress display for every step a user waits on: loading, training,
evaluation, prediction, suite cells, LLM generation.

Every long step opens a *task*::

    from relforge import progress

    with progress.task("dev", total=len(examples)) as t:
        for chunk in progress.batches(examples, batch_size):   # advances the innermost open task
            ...

and the display depends on where stderr goes:

* a terminal: one `rich` display on stderr for all open tasks (nested tasks,
  e.g. a suite's cells and the cell's training, are lines of the same
  display); it disappears when the tasks end;
* not a terminal (a log file, a pipe, a cluster job's output): plain lines,
  ``progress: dev 640/2717 (24%), 21.3 examples/s, 30 s elapsed, ~1 min
  left``, at most one every ``RELFORGE_PROGRESS_INTERVAL`` seconds (default
  30) per task, and a last line when a task that printed one ends -- a
  step shorter than the interval prints nothing;
* quiet (``relforge --quiet ...``, ``RELFORGE_QUIET=1`` or
  :func:`configure`): nothing. Results, notes and errors are not progress and
  are printed anyway.

A model's batch loop calls :func:`batches` (or :func:`advance`), so the engine
can show how far ``rank`` has got without knowing the model; a plugin whose
loop does not is shown as a task that jumps from 0 to done.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

_settings: dict[str, Any] = {"quiet": None, "interval": None, "stream": None, "mode": None}
_open: list[Task] = []
_rich: Any = None  # the shared rich Progress while a terminal display is up


def configure(*, quiet: bool | None = None, interval: float | None = None, stream: TextIO | None = None,
              mode: str | None = None) -> None:
    """Settings for the tasks opened from now on. ``mode``: ``rich``,
    ``plain`` or ``quiet`` (default: from the stream and ``quiet``)."""
    if mode not in (None, "rich", "plain", "quiet"):
        raise ValueError(f"progress mode {mode!r}: use rich, plain or quiet")
    _settings.update(quiet=quiet, interval=interval, stream=stream, mode=mode)


def is_quiet() -> bool:
    q = _settings["quiet"]
    return bool(q) if q is not None else os.environ.get("RELFORGE_QUIET", "") not in ("", "0", "false")


def _stream() -> TextIO:
    return _settings["stream"] or sys.stderr


def _interval() -> float:
    if _settings["interval"] is not None:
        return float(_settings["interval"])
    try:
        return float(os.environ.get("RELFORGE_PROGRESS_INTERVAL", "30"))
    except ValueError:
        return 30.0


def mode() -> str:
    """How a task opened now is shown: ``rich``, ``plain`` or ``quiet``."""
    if is_quiet():
        return "quiet"
    if _settings["mode"] is not None:
        return _settings["mode"]
    stream = _stream()
    return "rich" if getattr(stream, "isatty", lambda: False)() else "plain"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Task:
    """One step being waited on: ``advance(n)``, ``update(status=...)``."""

    def __init__(self, label: str, total: int | None, unit: str, how: str, done: int = 0) -> None:
        self.label, self.total, self.unit, self.how = label, total, unit, how
        #: ``done0``: what was done before this process started (a resumed run): not in the rate
        self.done, self.done0, self.status = done, done, ""
        self.t0 = self._last_line = time.perf_counter()
        self._printed = False
        self._rich_id = None
        self._lock = threading.Lock()  # advanced from worker threads too (LLM requests)
        if how == "rich":
            self._rich_id = _rich_display().add_task(label, total=total, status="", completed=done)

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        with self._lock:
            self.done += n
            if status is not None:
                self.status = status
            if self.how == "rich":
                _rich.update(self._rich_id, advance=n, status=self.status)
            elif self.how == "plain":
                now = time.perf_counter()
                if now - self._last_line >= _interval():
                    self._line(now)

    def update(self, *, status: str | None = None, total: int | None = None) -> None:
        """A new status text (or total) without advancing."""
        if total is not None:
            self.total = total
        self.advance(0, status=status)
        if self.how == "rich" and total is not None:
            _rich.update(self._rich_id, total=total)

    def line(self) -> str:
        """The plain-text progress line as it stands."""
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.done0) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total
                 else f"{self.done} {self.unit}"]
        if self.done > self.done0 and rate > 0:
            one = self.unit[:-1] if self.unit.endswith("s") else self.unit
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 0.1 else f"{1 / rate:.3g} s per {one}")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"~{_duration((self.total - self.done) / rate)} left")
        if self.status:
            parts.append(self.status)
        return f"progress: {self.label} " + ", ".join(parts)

    def _line(self, now: float) -> None:
        print(self.line(), file=_stream(), flush=True)
        self._last_line, self._printed = now, True

    def close(self) -> None:
        if self.how == "rich":
            _rich.remove_task(self._rich_id)
        elif self.how == "plain" and self._printed:
            elapsed = time.perf_counter() - self.t0
            status = f", {self.status}" if self.status else ""
            print(f"progress: {self.label} done, {self.done} {self.unit} in {_duration(elapsed)}{status}",
                  file=_stream(), flush=True)


def _rich_display():
    global _rich
    if _rich is None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        _rich = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                         console=Console(file=_stream()), transient=True,
                         # what the program prints goes where it was going (a redirected stdout stays a log)
                         redirect_stdout=False, redirect_stderr=False)
        _rich.start()
    return _rich


@contextmanager
def task(label: str, total: int | None = None, *, unit: str = "examples", done: int = 0) -> Iterator[Task]:
    """A step shown while it runs (see the module's text); ``total`` None
    for a step of unknown length (loading); ``done``: already done before
    (a resumed run), shown but not counted in the speed."""
    global _rich
    t = Task(label, total, unit, mode(), done)
    _open.append(t)
    try:
        yield t
    finally:
        _open.remove(t)
        t.close()
        if _rich is not None and not any(o.how == "rich" for o in _open):
            _rich.stop()
            _rich = None


def current() -> Task | None:
    """The innermost open task, if any."""
    return _open[-1] if _open else None


def advance(n: int = 1) -> None:
    """Advance the innermost open task by ``n`` (nothing when none is open)."""
    if _open:
        _open[-1].advance(n)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``; each slice, once processed (when the
    next is asked for, or at the end), advances the innermost open task."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for i in range(0, len(items), size):
        chunk = items[i:i + size]
        yield chunk
        advance(len(chunk))


@contextmanager
def hold() -> Iterator[None]:
    """Advances made inside (a model's :func:`batches`) go nowhere: for a
    step whose own task counts something else (``predict`` counts input
    lines, not the entity pairs they hold)."""
    t = Task("", None, "", "quiet")
    _open.append(t)
    try:
        yield
    finally:
        _open.remove(t)
