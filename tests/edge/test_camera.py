"""``python -m edge camera`` driven by a fake frame source."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edge import cli
from edge.camera import run_camera
from edge.classifier import Classifier
from tests.edge.conftest import solid


@pytest.fixture(scope="module")
def classifier(edge_bundle):
    return Classifier(edge_bundle)


def test_prints_one_line_per_frame_and_stops_at_the_limit(classifier):
    lines, sleeps, released = [], [], []

    def frames():
        try:
            for colour in ("red", "green", "blue", "red"):
                yield solid(colour, 480, 640)
        finally:
            released.append(True)  # what a real camera does in its generator's cleanup

    status = run_camera(classifier, frames(), interval=0.5, limit=3, out=lines.append, sleep=sleeps.append)
    assert status == 0
    assert "model_int8.tflite (int8) on ai_edge_litert" in lines[0]  # says what runs, once
    frame_lines = lines[1:]
    assert [line.split(":")[0] for line in frame_lines] == ["frame 1", "frame 2", "frame 3"]
    assert "Red test lesion" in frame_lines[0] and "Green test lesion" in frame_lines[1]
    assert "malignant" in frame_lines[0]
    assert len(sleeps) == 2 and all(0 < s <= 0.5 for s in sleeps)  # no sleep after the last frame
    assert released == [True]


def test_ctrl_c_exits_cleanly(classifier):
    lines = []

    def frames():
        yield solid("blue")
        raise KeyboardInterrupt

    assert run_camera(classifier, frames(), interval=0, out=lines.append) == 0
    assert lines[-1] == "stopped after 1 frames"


def test_camera_command_with_an_injected_source(edge_bundle):
    args = cli.build_parser().parse_args(
        ["camera", "--bundle", str(edge_bundle), "--interval", "0", "--limit", "2"]
    )
    stdout = io.StringIO()
    frames = (np.full((120, 160, 3), 255 * (i % 2), np.uint8) for i in range(10))
    assert cli.run_camera_command(args, frames=frames, stdout=stdout) == 0
    assert [line.split(":")[0] for line in stdout.getvalue().splitlines()[1:]] == ["frame 1", "frame 2"]
