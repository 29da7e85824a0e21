"""Progress with rate and ETA as plain log lines off a terminal, redrawn on one; the chance warning."""

from __future__ import annotations

import io
import logging

import pytest

from build.console import Progress, format_duration, quiet_tensorflow


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_durations_read_as_a_person_says_them():
    assert [format_duration(s) for s in (4.2, 150, 7980)] == ["4 s", "2m 30s", "2h 13m"]


def test_off_a_terminal_progress_is_a_log_line_every_tenth_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="edge.progress")
    progress = Progress("float epoch 3/61", total=250, unit="steps", per_unit=32, stream=io.StringIO())
    for step in range(250):
        progress.update(step + 1, loss=0.5)
    progress.close()

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0].startswith("float epoch 3/61  25/250 steps  10%") and "images/s" in lines[0]
    assert "loss 0.5000" in lines[0] and "ETA" in lines[0]
    assert "250/250 steps 100%" in lines[-1]


def test_on_a_terminal_progress_redraws_one_line(caplog):
    terminal = Terminal()
    progress = Progress("cache", total=4, stream=terminal)
    for done in range(1, 5):
        progress.update(done)
    progress.close()

    assert not caplog.records
    assert terminal.getvalue().startswith("\r") and terminal.getvalue().endswith("\n")
    assert "4/4 images 100%" in terminal.getvalue()


def test_tensorflow_is_quiet_unless_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    for name in ("tensorflow", "absl"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    quiet_tensorflow(verbose=True)
    assert logging.getLogger("absl").level == logging.NOTSET
    quiet_tensorflow(verbose=False)
    import os

    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert logging.getLogger("absl").level == logging.ERROR == logging.getLogger("tensorflow").level


def test_a_model_at_chance_gets_a_warning(caplog):
    pytest.importorskip("tensorflow", reason="the training module needs TensorFlow (the [build] extra)")
    from build.make.train import warn_if_at_chance

    assert warn_if_at_chance(0.27, 4, "float")
    assert "chance level" in caplog.text and "0.250 for 4 classes" in caplog.text
    assert not warn_if_at_chance(0.62, 4, "float")
