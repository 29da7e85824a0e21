"""tf.distribute strategies: the choice by name, and real training mirrored over two CPU devices."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="strategies need TensorFlow (the [build] extra)")

from build.strategy import make_strategy  # noqa: E402
from models.keras import tf  # noqa: E402
from tests.build.test_train import TINY_TOML, write_synthetic_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


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


# Logical devices can only be configured before TensorFlow initializes its devices, which the test
# process has already done, so the mirrored run gets a process of its own.
DRIVER = """
import json, logging, sys
sys.path.insert(0, {repo!r})
from models.keras import tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
logging.basicConfig(level=logging.INFO, format="%(message)s")

from build.config import load_config
from build.run import start_run
from build.strategy import make_strategy
from build.train import train_float

strategy = make_strategy("mirrored")
print("STRATEGY " + json.dumps({{"replicas": strategy.num_replicas_in_sync,
                                "devices": list(strategy.extended.worker_devices)}}), flush=True)
config = load_config(sys.argv[1], sys.argv[3:])
train_float(start_run(sys.argv[2], config, resume=False), config)
"""


@pytest.mark.slow
def test_training_mirrors_over_two_logical_cpu_devices(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO)))
    run_dir = tmp_path / "runs" / "mirrored"
    # batch 8 = 4 images per replica.
    overrides = [f"data.sources=['{data}']", "train.strategy='mirrored'", "train.batch_size=8"]
    result = subprocess.run([sys.executable, str(driver), str(TINY_TOML), str(run_dir), *overrides],
                            capture_output=True, text=True, timeout=400, cwd=REPO,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    line = next(line for line in result.stdout.splitlines() if line.startswith("STRATEGY "))
    strategy = json.loads(line[len("STRATEGY "):])
    assert strategy["replicas"] == 2
    assert [d.split("/")[-1] for d in strategy["devices"]] == ["device:CPU:0", "device:CPU:1"]
    # train_float chose the same strategy from the config.
    assert "strategy: MirroredStrategy with 2 replica(s)" in output

    with open(run_dir / "float" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert all(0 < loss < 10 for loss in losses), losses
    assert (run_dir / "float" / "model.keras").is_file()
