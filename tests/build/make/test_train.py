"""Float training: the learning-rate schedule, a tiny real run, and resuming after the process is killed."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs TensorFlow (the [build] extra)")

from build.config import BuildConfig, TrainConfig, load_config  # noqa: E402
from build.stage_configs import BalanceConfig  # noqa: E402
from build.make.context import prepare  # noqa: E402
from build.make.run import start_run  # noqa: E402
from build.make.train import freeze_batchnorm, learning_rate_at, make_optimizer, train_float, training_prior  # noqa: E402
from tests.conftest import TINY_LABELS, tiny_training_set  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TINY_TOML = REPO / "build" / "configs" / "tiny.toml"


def write_synthetic_dataset(root: Path, n_per_class: int = 16) -> Path:
    """A folder-per-class data set of 32x32 noisy colour PNGs: ``rdl``, ``grn`` and ``blu``."""
    from PIL import Image

    pixels, labels = tiny_training_set(n_per_class=n_per_class)
    for i, (image, label) in enumerate(zip(pixels, labels)):
        folder = root / TINY_LABELS[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


def tiny_config(data_root: Path, *overrides: str) -> BuildConfig:
    """``build/configs/tiny.toml`` pointed at a synthetic data set."""
    return load_config(TINY_TOML, [f"data.sources=['{data_root}']", *overrides])


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- schedule, prior and optimizer -------------------------------------------------------------------


def test_learning_rate_is_constant_then_warms_up_then_decays():
    cfg = TrainConfig(head_epochs=2, head_learning_rate=1e-3, epochs=10, learning_rate=3e-4, warmup_epochs=2)
    rates = [learning_rate_at(epoch, cfg) for epoch in range(12)]
    assert rates[:2] == [1e-3, 1e-3]
    warmup, decay = rates[2:4], rates[4:]
    assert warmup[0] < warmup[1] < 3e-4
    assert decay[0] == pytest.approx(3e-4)
    assert all(later < earlier for earlier, later in zip(decay, decay[1:]))
    assert 0.05 * 3e-4 <= decay[-1] < 0.1 * 3e-4  # cosine down to a 5% floor


def test_without_warmup_fine_tuning_starts_at_the_peak():
    cfg = TrainConfig(head_epochs=1, epochs=4, learning_rate=2e-4, warmup_epochs=0)
    assert learning_rate_at(1, cfg) == pytest.approx(2e-4)


def test_training_prior_follows_the_balancing_mode():
    labels = np.array([0] * 100 + [1] * 25)
    oversample = TrainConfig(balance=BalanceConfig(mode="oversample", power=0.5))
    np.testing.assert_allclose(training_prior(labels, 2, oversample), [10 / 15, 5 / 15])
    natural = TrainConfig(balance=BalanceConfig(mode="none"))
    np.testing.assert_allclose(training_prior(labels, 2, natural), [0.8, 0.2])
    weighted = TrainConfig(balance=BalanceConfig(mode="class_weight"))
    np.testing.assert_allclose(training_prior(labels, 2, weighted), [0.5, 0.5])


@pytest.mark.parametrize(
    "name, cls", [("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"), ("sgd", "SGD")]
)
def test_optimizer_is_the_one_configured_at_the_head_rate(name, cls):
    optimizer = make_optimizer(TrainConfig(optimizer=name, head_learning_rate=5e-3))
    assert type(optimizer).__name__ == cls
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(5e-3)


# --- a tiny real run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    config = tiny_config(write_synthetic_dataset(root / "data"))
    run = start_run(root / "runs" / "tiny", config, resume=False)
    return run, config, train_float(prepare(run, config)).path


def test_training_writes_a_model_a_log_and_its_state(trained_run):
    run, config, model_path = trained_run
    from converters.export import load_keras_model

    total = config.train.head_epochs + config.train.epochs
    rows = read_log(run.root / "float" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, total + 1))
    phases = ["head"] * config.train.head_epochs + ["finetune"] * config.train.epochs
    assert [r["stage"] for r in rows] == phases
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    state = json.loads((run.root / "float" / "state.json").read_text())
    assert state["epoch"] == total and 1 <= state["best_epoch"] <= total
    summary = json.loads((run.root / "float" / "summary.json").read_text())
    assert summary["classes"] == sorted(TINY_LABELS)
    model = load_keras_model(model_path)
    probabilities = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_finished_run_is_not_trained_again(trained_run):
    run, config, model_path = trained_run
    modified = model_path.stat().st_mtime_ns
    assert train_float(prepare(run, config)).path == model_path
    assert model_path.stat().st_mtime_ns == modified


def test_resuming_a_finished_run_with_another_config_is_refused(trained_run):
    run, config, _ = trained_run
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=9))
    with pytest.raises(ValueError, match=r"cannot resume .*\['train'\]"):
        start_run(run.root, longer, resume=True)


def test_a_warm_started_run_starts_from_the_earlier_runs_weights(trained_run, tmp_path):
    run, config, model_path = trained_run
    from converters.export import load_keras_model

    # No head phase and a zero learning rate: the continued model must be the earlier one, unchanged.
    warm = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train,
            init_from=str(run.root / "float" / "best.weights.npz"),
            head_epochs=0,
            epochs=1,
            learning_rate=0.0,
            warmup_epochs=0,
        ),
    )
    continued = train_float(prepare(start_run(tmp_path / "warm", warm, resume=False), warm)).path
    for before, after in zip(
        load_keras_model(model_path).get_weights(), load_keras_model(continued).get_weights()
    ):
        np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("release_shift", [[0.6, -0.2, -0.4], None])
def test_a_run_continues_from_a_bundles_float_file(trained_run, tmp_path, release_shift):
    run, config, model_path = trained_run
    from build.make.run import input_spec
    from converters.export import export_tflite, load_keras_model
    from converters.quantization import QuantizationConfig
    from models.classifier import shift_logits

    # A released bundle without its run folder: the float model's file, its head shifted by a decision
    # shift the card records (when there is no card, the prior correction's shift is assumed).
    released = load_keras_model(model_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    if release_shift is not None:
        shift_logits(released, np.array(release_shift))
        (bundle / "model_card.json").write_text(
            json.dumps({"training": {"float": {"logit_shift": release_shift}}})
        )
    classes = json.loads((run.root / "float" / "summary.json").read_text())["classes"]
    float_file = export_tflite(
        released,
        bundle / "model_float32.tflite",
        QuantizationConfig.for_float32(),
        input_spec=input_spec(config),
        labels=classes,
    ).path
    warm = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train,
            init_from=str(float_file),
            head_epochs=0,
            epochs=1,
            learning_rate=0.0,
            warmup_epochs=0,
        ),
    )
    continued = train_float(prepare(start_run(tmp_path / "warm", warm, resume=False), warm)).path

    # Nothing trained (rate 0): the continued model is the run's own, with its own decision shift again.
    images = np.random.default_rng(0).uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        load_keras_model(continued).predict(images, verbose=0),
        load_keras_model(model_path).predict(images, verbose=0),
        atol=1e-5,
    )


def test_with_no_epoch_planned_the_warm_start_is_the_float_model(trained_run, tmp_path):
    run, config, model_path = trained_run
    from converters.export import load_keras_model

    # Re-exporting a release: nothing is trained, no epoch is logged, and the float model predicts as the
    # earlier one (its decision shift fitted again, as the earlier run fitted it: both use the prior's).
    reexport = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train,
            init_from=str(run.root / "float" / "best.weights.npz"),
            head_epochs=0,
            epochs=0,
        ),
    )
    result = train_float(prepare(start_run(tmp_path / "reexport", reexport, resume=False), reexport))
    assert result.epoch == 0 and not (tmp_path / "reexport" / "float" / "log.csv").exists()
    # Its best weights are the warm start's, where FixRes (or a later warm start) continues from.
    with (
        np.load(run.root / "float" / "best.weights.npz") as warm_start,
        np.load(tmp_path / "reexport" / "float" / "best.weights.npz") as best,
    ):
        assert sorted(best.files) == sorted(warm_start.files)
        for name in warm_start.files:
            np.testing.assert_array_equal(best[name], warm_start[name])
    images = np.random.default_rng(1).uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        load_keras_model(result.path).predict(images, verbose=0),
        load_keras_model(model_path).predict(images, verbose=0),
        atol=1e-5,
    )


def test_a_warm_start_from_a_missing_file_says_what_to_pass(trained_run, tmp_path):
    _, config, _ = trained_run
    missing = str(tmp_path / "nope.npz")
    warm = dataclasses.replace(config, train=dataclasses.replace(config.train, init_from=missing))
    with pytest.raises(FileNotFoundError, match=r"init_from: .*nope.npz.*best.weights.npz"):
        train_float(prepare(start_run(tmp_path / "warm", warm, resume=False), warm))


def test_a_class_shift_fitted_on_validation_is_folded_into_the_head_and_recorded(trained_run, tmp_path):
    run, config, _ = trained_run
    from converters.export import load_keras_model
    from models.classifier import build_model, prior_shift
    from build.make.calibration import softmax
    from build.make.reproducible import load_weights

    fitted = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train,
            init_from=str(run.root / "float" / "best.weights.npz"),
            head_epochs=0,
            epochs=1,
            learning_rate=0.0,
            warmup_epochs=0,
            fit_class_bias=True,
        ),
    )
    shifted_run = start_run(tmp_path / "fitted", fitted, resume=False)
    saved = load_keras_model(train_float(prepare(shifted_run, fitted)).path)

    summary = json.loads((shifted_run.root / "float" / "summary.json").read_text())
    shift = np.array(summary["logit_shift"])
    assert summary["fit_class_bias"] and shift.shape == (3,) and abs(shift.sum()) < 1e-6
    assert not np.allclose(shift, prior_shift(np.array(summary["train_prior"]), 1.0))
    raw = build_model(config.model, num_classes=3)
    load_weights(raw, shifted_run.root / "float" / "best.weights.npz")
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    expected = softmax(np.log(raw.predict(images, verbose=0)) - shift)
    np.testing.assert_allclose(saved.predict(images, verbose=0), expected, atol=1e-5)


@pytest.mark.parametrize(
    "weights, train_batchnorm, phase, frozen",
    [
        ("imagenet", False, "finetune", True),
        ("imagenet", True, "finetune", False),
        ("imagenet", True, "head", True),
        ("none", False, "head", False),
    ],
)
def test_batchnorm_trains_only_when_asked_or_from_scratch(weights, train_batchnorm, phase, frozen):
    overrides = [f"model.weights='{weights}'", f"train.train_batchnorm={str(train_batchnorm).lower()}"]
    config = load_config(TINY_TOML, overrides)
    assert freeze_batchnorm(config, phase) is frozen


# --- killed and resumed --------------------------------------------------------------------------------

# Runs one training in a fresh process. On a busy 2-core machine a tiny epoch can end before a poll
# notices its checkpoint, so the test makes the process wait, at a chosen epoch, just before or just
# after it writes state.json; the test then SIGKILLs it there. Nothing else about training changes.
# LOGICAL_CPUS splits the CPU into that many devices, which must happen before TensorFlow starts.
DRIVER = """
import json, logging, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from models.keras import tf

if int(os.environ.get("LOGICAL_CPUS", "0")):
    cpu = tf.config.list_physical_devices("CPU")[0]
    devices = [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"])
    tf.config.set_logical_device_configuration(cpu, devices)

import build.make.train as train_module
from build.config import load_config
from build.make.context import prepare
from build.make.run import start_run

logging.basicConfig(level=logging.INFO, format="%(message)s")
when, _, at = os.environ.get("PAUSE", "").partition(":")
write = train_module.write_text_atomic

def pause():
    Path(os.environ["PAUSED_MARKER"]).write_text("paused")
    time.sleep(600)

def write_maybe_pausing(path, text):
    epoch = json.loads(text).get("epoch") if path.name == "state.json" else None
    if when == "before" and epoch == int(at):
        pause()
    write(path, text)
    if when == "after" and epoch == int(at):
        pause()

train_module.write_text_atomic = write_maybe_pausing
config = load_config(sys.argv[1], sys.argv[3:])
train_module.train_float(prepare(start_run(sys.argv[2], config, resume=True), config))
"""


def run_training(
    tmp_path: Path,
    run_dir: Path,
    overrides: list[str],
    pause: str | None,
    timeout: float = 300,
    logical_cpus: int = 0,
) -> str:
    """Trains in a subprocess; with ``pause`` ("before:N"/"after:N") SIGKILLs it there. Returns its output."""
    return run_pausable(
        tmp_path,
        DRIVER,
        run_dir,
        overrides,
        pause,
        timeout=timeout,
        extra_env={"LOGICAL_CPUS": str(logical_cpus)},
    )


def run_pausable(
    tmp_path: Path,
    driver_source: str,
    run_dir: Path,
    overrides: list[str],
    pause: str | None,
    *,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> str:
    """Runs ``driver_source`` (a script taking CONFIG RUN OVERRIDES... that waits at ``pause`` after writing
    the PAUSED_MARKER file) in a subprocess: SIGKILLs it at the pause, or waits for it to finish
    successfully. Returns its output."""
    driver = tmp_path / "driver.py"
    driver.write_text(driver_source.format(repo=str(REPO)))
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    output = tmp_path / f"output-{run_dir.name}-{pause or 'final'}.txt"
    env = {
        **os.environ,
        "PAUSE": pause or "",
        "PAUSED_MARKER": str(marker),
        "CUDA_VISIBLE_DEVICES": "",
        **(extra_env or {}),
    }
    with open(output, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(driver), str(TINY_TOML), str(run_dir), *overrides],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        try:
            if pause is None:
                process.wait(timeout=timeout)
                assert process.returncode == 0, output.read_text()[-3000:]
                return output.read_text()
            while not marker.exists():
                assert process.poll() is None, f"the run ended before {pause}:\n{output.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no pause at {pause} in {timeout} s"
                time.sleep(0.1)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            assert process.returncode == -signal.SIGKILL
            return output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_completed_epoch(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data")
    run_dir = tmp_path / "runs" / "killed"
    stage = run_dir / "float"
    # 1 head epoch + 3 fine-tuning epochs.
    overrides = [f"data.sources=['{data}']", "train.epochs=3"]

    # Killed after the epoch-1 checkpoint but before state.json: epoch 1 was never completed.
    run_training(tmp_path, run_dir, overrides, pause="before:1")
    assert not (stage / "state.json").exists() and len(read_log(stage / "log.csv")) == 1

    # Killed after epoch 1 (the end of the head phase) and after epoch 3 (within fine-tuning).
    run_training(tmp_path, run_dir, overrides, pause="after:1")
    assert json.loads((stage / "state.json").read_text())["epoch"] == 1
    first_row = read_log(stage / "log.csv")[0]
    changed = tiny_config(data, "train.epochs=3", "train.learning_rate=0.1")
    with pytest.raises(ValueError, match=r"cannot resume .*differs from the saved one in \['train'\]"):
        start_run(run_dir, changed, resume=True)
    output = run_training(tmp_path, run_dir, overrides, pause="after:3")
    assert "resuming after epoch 1" in output
    assert json.loads((stage / "state.json").read_text())["epoch"] == 3

    output = run_training(tmp_path, run_dir, overrides, pause=None)
    assert "resuming after epoch 3" in output
    rows = read_log(stage / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[0] == first_row  # epoch 1 was kept, not trained again
    assert [r["stage"] for r in rows] == ["head", "finetune", "finetune", "finetune"]
    state = json.loads((stage / "state.json").read_text())
    assert state["epoch"] == 4
    assert (stage / "model.keras").is_file() and (stage / "summary.json").is_file()


@pytest.mark.slow
def test_an_interrupted_run_can_be_finished_at_its_best_epoch(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data")
    run_dir = tmp_path / "runs" / "finished"
    stage = run_dir / "float"
    # Killed after 2 of its 4 epochs; the user has no time for the other two.
    run_training(tmp_path, run_dir, [f"data.sources=['{data}']", "train.epochs=3"], pause="after:2")
    config = tiny_config(data, "train.epochs=3")
    best = dict(np.load(stage / "best.weights.npz"))

    model_path = train_float(prepare(start_run(run_dir, config, resume=True), config), finish=True).path

    assert [int(r["epoch"]) for r in read_log(stage / "log.csv")] == [
        1,
        2,
    ]  # nothing trained after the request
    state = json.loads((stage / "state.json").read_text())
    assert state["finished_early"] and state["stopped"] and state["epoch"] == 2
    summary = json.loads((stage / "summary.json").read_text())
    assert summary["finished_early"] and summary["best_epoch"] == state["best_epoch"] <= 2
    from converters.export import load_keras_model

    # The model is the best epoch's (the head's bias also carries the decision shift).
    weights = load_keras_model(model_path).get_weights()
    assert np.array_equal(weights[0], best["arr_0"])


def test_finishing_a_run_that_has_not_completed_an_epoch_says_what_to_do(tmp_path):
    config = tiny_config(write_synthetic_dataset(tmp_path / "data"))
    run = start_run(tmp_path / "runs" / "fresh", config, resume=False)
    ctx = prepare(run, config)
    with pytest.raises(ValueError, match="no epoch has completed yet"):
        train_float(ctx, finish=True)
    assert not (run.root / "float" / "model.keras").exists()
