"""Reproducible builds: the same seed gives the same model, and a build killed with SIGKILL during float
training and again during QAT resumes to exactly what the uninterrupted build made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="building needs TensorFlow (the [build] extra)")

from tests.build.make.test_train import run_pausable, write_synthetic_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# A whole `skinlesion build` in a fresh process. PAUSE="float:after:2" makes it wait (to be killed)
# right after the float stage writes state.json for epoch 2 ("fixres", "qat": those stages' folders);
# "before" waits just before that write, after the epoch's checkpoint and weights are on disk. Nothing
# else about the build changes.
DRIVER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import build.make.qat as qat_module
import build.make.train as train_module
from build.build import build_all
from build.config import load_config

stage, when, at = (os.environ.get("PAUSE") or "::").split(":")

def pause():
    Path(os.environ["PAUSED_MARKER"]).write_text("paused")
    time.sleep(600)

def pausing(module):
    write = module.write_text_atomic

    def write_maybe_pausing(path, text):
        epoch = json.loads(text).get("epoch") if path.name == "state.json" else None
        here = stage == path.parent.name and epoch == int(at or 0)
        if here and when == "before":
            pause()
        write(path, text)
        if here and when == "after":
            pause()

    module.write_text_atomic = write_maybe_pausing

pausing(train_module)
pausing(qat_module)
config = load_config(sys.argv[1], sys.argv[3:])
sys.exit(build_all(sys.argv[2], config, resume=True))
"""


def build(tmp_path: Path, run_dir: Path, overrides: list[str], pause: str | None = None) -> None:
    """Runs the build in a subprocess; with ``pause`` SIGKILLs it there, else waits for it to finish."""
    run_pausable(tmp_path, DRIVER, run_dir, overrides, pause, timeout=400)


def model_weights(path: Path) -> list[np.ndarray]:
    from converters.export import load_keras_model

    return load_keras_model(path).get_weights()


def card_results(run_dir: Path) -> dict:
    """What the card says of the model, without timings."""
    card = json.loads((run_dir / "bundle" / "model_card.json").read_text())
    validation = {
        variant: {k: v for k, v in report.items() if k != "seconds"}
        for variant, report in card["validation"].items()
    }
    return {
        "metrics": card["metrics"],
        "temperature": card["temperature"],
        "validation": validation,
        "abstain": card["abstain"],
        "deterministic": card["training"]["float"]["deterministic"],
    }


@pytest.mark.slow
def test_same_seed_same_model_and_a_killed_build_resumes_to_the_uninterrupted_result(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data")
    # 1 head epoch + 3 fine-tuning epochs, then 2 QAT epochs.
    overrides = [f"data.sources=['{data}']", "train.epochs=3", "qat.epochs=2"]
    runs = tmp_path / "runs"

    build(tmp_path, runs / "first", overrides)
    build(tmp_path, runs / "second", overrides)
    # Killed between epoch 3's checkpoint and its state.json (float), resumed, killed after QAT epoch 1,
    # resumed to the end.
    build(tmp_path, runs / "killed", overrides, pause="float:before:3")
    assert json.loads((runs / "killed" / "float" / "state.json").read_text())["epoch"] == 2
    build(tmp_path, runs / "killed", overrides, pause="qat:after:1")
    assert json.loads((runs / "killed" / "qat" / "state.json").read_text())["epoch"] == 1
    build(tmp_path, runs / "killed", overrides)

    first = card_results(runs / "first")
    assert first["deterministic"] is True
    assert card_results(runs / "second") == first
    assert card_results(runs / "killed") == first
    for stage_file in ("float/model.keras", "qat/model.h5"):
        expected = model_weights(runs / "first" / stage_file)
        for other in ("second", "killed"):
            for a, b in zip(expected, model_weights(runs / other / stage_file)):
                np.testing.assert_allclose(b, a, rtol=0, atol=1e-6, err_msg=f"{other}/{stage_file}")


@pytest.mark.slow
def test_the_weight_average_survives_a_kill_and_resume(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data")
    assert_kill_and_resume_ends_as_the_whole_training(
        tmp_path, [f"data.sources=['{data}']", "train.epochs=3", "train.ema=0.9"]
    )


@pytest.mark.slow
def test_a_training_distilled_from_teachers_survives_a_kill_and_resume(tmp_path):
    from tests.build.make.test_train import run_training

    data = write_synthetic_dataset(tmp_path / "data")
    run_training(tmp_path, tmp_path / "runs" / "teacher", [f"data.sources=['{data}']"], pause=None)
    teacher = tmp_path / "runs" / "teacher" / "float" / "best.weights.npz"
    assert_kill_and_resume_ends_as_the_whole_training(
        tmp_path,
        [
            f"data.sources=['{data}']",
            "train.epochs=3",
            f"train.teachers=['{teacher}']",
            "train.distillation=0.5",
        ],
    )


def assert_kill_and_resume_ends_as_the_whole_training(tmp_path: Path, overrides: list[str]) -> None:
    """A float training killed mid fine-tuning and resumed ends with the weights and log of one that ran
    through."""
    from tests.build.make.test_train import run_training

    runs = tmp_path / "runs"
    run_training(tmp_path, runs / "whole", overrides, pause=None)
    run_training(tmp_path, runs / "killed", overrides, pause="after:3")  # mid fine-tuning
    output = run_training(tmp_path, runs / "killed", overrides, pause=None)

    assert "resuming after epoch 3" in output
    for name in ("best.weights.npz", "last.weights.npz"):
        with (
            np.load(runs / "whole" / "float" / name) as whole,
            np.load(runs / "killed" / "float" / name) as killed,
        ):
            for key in whole.files:
                np.testing.assert_allclose(
                    killed[key], whole[key], rtol=0, atol=1e-6, err_msg=f"{name} {key}"
                )
    whole_log = (runs / "whole" / "float" / "log.csv").read_text().splitlines()
    killed_log = (runs / "killed" / "float" / "log.csv").read_text().splitlines()
    strip = lambda rows: [",".join(r.split(",")[:6]) for r in rows]  # noqa: E731  (without the timings)
    assert strip(killed_log) == strip(whole_log)


@pytest.mark.slow
def test_a_fixres_build_ships_at_the_release_size_and_resumes_a_kill_in_its_epochs(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data")
    # Float training at the tiny config's 32 px, then 2 FixRes epochs at 48 px, QAT and the export there.
    overrides = [
        f"data.sources=['{data}']",
        "fixres.image_size=48",
        "fixres.epochs=2",
        "fixres.learning_rate=1e-3",
    ]
    runs = tmp_path / "runs"

    build(tmp_path, runs / "whole", overrides)
    build(tmp_path, runs / "killed", overrides, pause="fixres:after:1")
    assert json.loads((runs / "killed" / "fixres" / "state.json").read_text())["epoch"] == 1
    assert not (runs / "killed" / "qat").exists()
    build(tmp_path, runs / "killed", overrides)

    card = json.loads((runs / "whole" / "bundle" / "model_card.json").read_text())
    assert (card["input"]["height"], card["input"]["width"]) == (48, 48)
    training = card["training"]
    assert training["config"]["model"]["image_size"] == 32 and training["config"]["fixres"]["epochs"] == 2
    assert training["float"]["epoch"] == 2 and training["float"]["schedule"]["learning_rate"] == 1e-3
    assert training["float_at_training_size"]["image_size"] == 32
    assert training["float_at_training_size"]["epoch"] == 3  # the tiny config's 1 head + 2 fine-tuning epochs
    from converters.export import load_keras_model

    assert load_keras_model(runs / "whole" / "fixres" / "model.keras").input_shape[1:3] == (48, 48)
    assert load_keras_model(runs / "whole" / "float" / "model.keras").input_shape[1:3] == (32, 32)

    assert card_results(runs / "killed") == card_results(runs / "whole")
    for a, b in zip(
        model_weights(runs / "whole" / "qat" / "model.h5"),
        model_weights(runs / "killed" / "qat" / "model.h5"),
    ):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)

    # `skinlesion export RUN` alone finds the FixRes model and exports at its size again.
    from build.build import run_stage

    (runs / "whole" / "bundle" / "model_card.json").unlink()
    assert run_stage(runs / "whole", "export") == 0
    again = json.loads((runs / "whole" / "bundle" / "model_card.json").read_text())
    assert again["input"]["height"] == 48 and again["training"]["float"] == training["float"]

    # `skinlesion validate --run` reads the run's images at the size its files take, not training's.
    from build.build import validate_command

    whole = runs / "whole"
    capsys.readouterr()
    validate_command(
        whole / "bundle" / "model_int8.tflite", whole / "fixres" / "model.keras", str(data), run_dir=whole
    )
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{") : printed.rindex("}") + 1])
    assert report["n"] == 48 and report["variant"] == "int8"  # every image of the 3 x 16, at 48 px
