"""tf.distribute strategies: the choice by name, and real training mirrored over two CPU devices."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow", reason="strategies need TensorFlow (the [build] extra)")

from build.make.strategy import make_strategy  # noqa: E402
from models.keras import tf  # noqa: E402
from tests.build.make.test_train import read_log, run_training, write_synthetic_dataset  # noqa: E402


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="checks the CPU-only choice")
@pytest.mark.parametrize("name", ["auto", "one"])
def test_without_gpus_training_runs_on_the_cpu(name):
    strategy = make_strategy(name)
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    assert strategy.extended.worker_devices[0].endswith("CPU:0")


def test_an_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="auto|one|mirrored|multiworker, got 'tpu'"):
        make_strategy("tpu")


@pytest.mark.slow
def test_training_mirrors_over_two_logical_cpu_devices_and_resumes(tmp_path):
    # Logical devices can only be set up before TensorFlow starts, which this process already did, so
    # training runs in processes of its own (see test_train.run_training).
    data = write_synthetic_dataset(tmp_path / "data")
    run_dir = tmp_path / "runs" / "mirrored"
    stage = run_dir / "float"
    # batch 8 = 4 images per replica; 1 head epoch + 2 fine-tuning epochs.
    overrides = [f"data.sources=['{data}']", "train.strategy='mirrored'", "train.batch_size=8"]

    first = run_training(tmp_path, run_dir, overrides, pause="after:1", logical_cpus=2)
    assert "strategy: MirroredStrategy with 2 replica(s)" in first
    assert json.loads((stage / "state.json").read_text())["epoch"] == 1

    # Resuming across the phase boundary loads weights into the distributed model.
    second = run_training(tmp_path, run_dir, overrides, pause=None, logical_cpus=2)
    assert "strategy: MirroredStrategy with 2 replica(s)" in second and "resuming after epoch 1" in second
    rows = read_log(stage / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert all(0 < loss < 10 for loss in losses), losses
    assert (stage / "model.keras").is_file()
