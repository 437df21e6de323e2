"""The one progress display (relforge.progress): plain lines off a terminal, nothing when quiet, one
rich display for nested steps on a terminal."""
from __future__ import annotations

import io

import pytest

from relforge import progress


@pytest.fixture(autouse=True)
def _reset():
    yield
    progress.configure()


def test_plain_lines_are_throttled_and_a_step_that_printed_says_when_it_ended(monkeypatch):
    out = io.StringIO()
    progress.configure(stream=out, interval=0.0)
    with progress.task("dev", total=5) as t:
        for _ in progress.batches(list(range(5)), 2):
            pass
        assert t.done == 5
    lines = out.getvalue().splitlines()
    assert lines[:3] == [line for line in lines[:3] if line.startswith("progress: dev ")]
    assert "2/5 (40%)" in lines[0] and "4/5 (80%)" in lines[1] and "5/5 (100%)" in lines[2]
    assert "left" in lines[0] and "left" not in lines[2]
    assert lines[3].startswith("progress: dev done, 5 examples in")
    # a step shorter than the interval prints nothing at all
    out.truncate(0), out.seek(0)
    progress.configure(stream=out, interval=3600.0)
    with progress.task("dev", total=5):
        for _ in progress.batches(list(range(5)), 2):
            pass
    assert out.getvalue() == ""


def test_quiet_prints_nothing(monkeypatch):
    out = io.StringIO()
    progress.configure(stream=out, interval=0.0, quiet=True)
    with progress.task("train", total=3, unit="steps") as t:
        t.advance(3, status="loss 1.0")
    assert out.getvalue() == "" and progress.mode() == "quiet"
    progress.configure(stream=out, interval=0.0)
    monkeypatch.setenv("RELFORGE_QUIET", "1")
    assert progress.mode() == "quiet"
    monkeypatch.setenv("RELFORGE_QUIET", "0")
    assert progress.mode() == "plain"  # a StringIO is not a terminal


def test_advances_reach_the_innermost_step_and_hold_keeps_them_out():
    out = io.StringIO()
    progress.configure(stream=out, interval=3600.0)
    with progress.task("suite", total=2, unit="cells") as outer:
        with progress.task("dev", total=4) as inner:
            progress.advance(4)
        assert (outer.done, inner.done) == (0, 4)
        with progress.hold():
            progress.advance(10)
        progress.advance(1)
        assert outer.done == 1 and progress.current() is outer
    assert progress.current() is None
    progress.advance(5)  # no step open: nothing to advance, no error
    with pytest.raises(ValueError, match="batch size"):
        list(progress.batches([1, 2], 0))


def test_status_and_unknown_totals_in_plain_lines():
    out = io.StringIO()
    progress.configure(stream=out, interval=0.0)
    with progress.task("loading data semeval", unit="splits") as t:
        t.advance(2, status="train read")
    assert out.getvalue().splitlines()[0].startswith("progress: loading data semeval 2 splits, ")
    assert "train read" in out.getvalue()


def test_rich_display_is_one_for_nested_steps_and_ends_with_them():
    out = io.StringIO()
    progress.configure(stream=out, mode="rich")
    with progress.task("suite x", total=2, unit="cells"):
        with progress.task("train", total=3, unit="steps") as t:
            t.update(status="first step ...")
            display = progress._rich
            assert display is not None and len(display.tasks) == 2
            t.advance(3, status="loss 0.5")
            assert display.tasks[1].completed == 3 and display.tasks[1].fields["status"] == "loss 0.5"
        assert len(display.tasks) == 1
    assert progress._rich is None  # the display stopped with its last step
    with pytest.raises(ValueError, match="progress mode"):
        progress.configure(mode="fancy")


def test_a_failing_step_closes_its_display():
    progress.configure(stream=io.StringIO(), mode="rich")
    with pytest.raises(RuntimeError):
        with progress.task("train", total=3):
            raise RuntimeError("boom")
    assert progress._rich is None and progress.current() is None


def test_the_training_step_shows_no_loss_before_the_first_step_has_one():
    from relforge.engine.trainer import _Progress

    out = io.StringIO()
    progress.configure(stream=out, interval=0.0)
    bar = _Progress(4, enabled=True)
    bar.advance(0)
    bar.advance(1, loss=2.5, speed=1.0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "nan" not in out.getvalue() and lines[0].endswith("first step ...")
    assert "1/4 (25%)" in lines[-2] and "steps/s" in lines[-2] and lines[-2].endswith("loss 2.5000")
    assert "done" in lines[-1]
    assert progress.current() is None
    bar = _Progress(4, enabled=False)  # a process that is not the main one shows nothing
    bar.advance(1, loss=1.0)
    bar.close()
    assert progress.current() is None


def test_a_resumed_step_counts_only_its_own_progress_in_the_speed():
    out = io.StringIO()
    progress.configure(stream=out, interval=0.0)
    with progress.task("train", total=100, unit="steps", done=90) as t:
        t.update()
        assert "90/100 (90%)" in out.getvalue() and "steps/s" not in out.getvalue()  # no speed from old steps
        t.advance(1)
    assert "91/100" in out.getvalue() and "done, 91 steps" in out.getvalue()


def test_the_live_display_leaves_stdout_where_it_goes(capsys):
    """A live display on a terminal's stderr must not pull the program's own stdout (a log, a pipe) onto it."""
    progress.configure(stream=io.StringIO(), mode="rich")
    with progress.task("train", total=2):
        print("epoch 1/2: a line for the log")
    captured = capsys.readouterr()
    assert "epoch 1/2: a line for the log" in captured.out
