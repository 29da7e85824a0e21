"""Multi-worker training for real: two worker processes on loopback ports, ``TF_CONFIG``, and
``MultiWorkerMirroredStrategy`` (``train.strategy = "multiworker"``) train the same weights as one
process on the same global batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs TensorFlow (the [build] extra)")

REPO = Path(__file__).resolve().parents[2]
STEPS = 4
GLOBAL_BATCH = 8
# Each worker computes half of every global batch and the gradients are averaged across workers; only the
# order of the float sums differs from one process computing the whole batch.
TOLERANCE = 1e-5

# One training process: the project's strategy, model, optimizer and input pipeline. BatchNorm stays in
# inference mode and there is no dropout, so the two workers' half batches add up to the full batch.
WORKER = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from build.config import TrainConfig
from build.make.pipeline import training_dataset
from build.stage_configs import AugmentConfig, BalanceConfig
from build.make.cache import CachedImages
from build.make.reproducible import make_reproducible
from build.make.strategy import make_strategy
from build.make.train import make_optimizer
from edge.preprocess import InputSpec
from models.classifier import ModelConfig, build_model, set_trainable_top

strategy_name, out = sys.argv[1], sys.argv[2]
strategy = make_strategy(strategy_name)  # before any other TensorFlow work, as train_float does
make_reproducible(0, deterministic=True)
spec = InputSpec(height=96, width=96)
rng = np.random.default_rng(0)
data = CachedImages(pixels=rng.integers(0, 256, (24, 96, 96, 3), dtype=np.uint8),
                    labels=np.arange(24, dtype=np.int32) % 3)
dataset = training_dataset(data, spec, num_classes=3, batch_size={batch}, augment=AugmentConfig(),
                           balance=BalanceConfig(), seed=0)
with strategy.scope():
    model = build_model(ModelConfig(backbone="mobilenet_v2", alpha=0.35, image_size=96, weights="none",
                                    dropout=0.0, l2=0.0), 3)
    set_trainable_top(model, "mobilenet_v2", 99, freeze_batchnorm=True)
    model.compile(optimizer=make_optimizer(TrainConfig(optimizer="sgd", head_learning_rate=0.05)),
                  loss="categorical_crossentropy")
model.fit(dataset, steps_per_epoch={steps}, epochs=1, verbose=0)
np.savez(out, *model.get_weights())
print("trained", strategy.num_replicas_in_sync, "replica(s)")
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


@pytest.mark.slow
def test_two_workers_train_the_weights_one_process_trains(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO), batch=GLOBAL_BATCH, steps=STEPS))
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    base_env["CUDA_VISIBLE_DEVICES"] = ""

    single = subprocess.run(
        [sys.executable, str(script), "one", str(tmp_path / "single.npz")],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {
            **base_env,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, str(script), "multiworker", str(tmp_path / f"w{index}.npz")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert "trained 2 replica(s)" in stdout

    expected = weights(tmp_path / "single.npz")
    first, second = weights(tmp_path / "w0.npz"), weights(tmp_path / "w1.npz")
    start = weights_before_training(tmp_path, script, base_env)
    assert any(not np.allclose(a, b) for a, b in zip(expected, start))  # the steps did move the weights
    for a, b, c in zip(expected, first, second):
        np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(b, c)  # the workers hold one model


def weights_before_training(tmp_path: Path, script: Path, env: dict) -> list[np.ndarray]:
    untrained = tmp_path / "untrained.py"
    untrained.write_text(
        script.read_text()
        .replace(f"steps_per_epoch={STEPS}", "steps_per_epoch=1")
        .replace("model.fit(", "0 and model.fit(")
    )
    done = subprocess.run(
        [sys.executable, str(untrained), "one", str(tmp_path / "start.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return weights(tmp_path / "start.npz")
