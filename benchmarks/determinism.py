"""What ``train.deterministic`` costs: training steps per second with TensorFlow's deterministic
kernels on and off, on the same model, batch and synthetic data, each in a fresh process (the switch
is process-wide), one after the other in this run:

    python -m benchmarks.determinism                          # MobileNetV2-1.0 at 160 px, full fine-tune
    python -m benchmarks.determinism --size 96 --alpha 0.35 --steps 10

Prints seconds per step for both and their ratio (deterministic / default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from build.make.reproducible import make_reproducible
from models.classifier import ModelConfig, build_model, set_trainable_top
from models.keras import keras, tf

deterministic, size, alpha, steps, batch = json.loads(sys.argv[1])
make_reproducible(0, deterministic=deterministic)
model = build_model(ModelConfig(backbone="mobilenet_v2", alpha=alpha, image_size=size, weights="none"), 7)
set_trainable_top(model, "mobilenet_v2", 99, freeze_batchnorm=False)
model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy")
rng = np.random.default_rng(0)
images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
targets = tf.one_hot(rng.integers(0, 7, batch), 7)
data = tf.data.Dataset.from_tensors((images, targets)).repeat()
model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # tracing and warm-up
started = time.perf_counter()
model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
print(json.dumps({{"seconds_per_step": (time.perf_counter() - started) / steps}}))
"""


def seconds_per_step(deterministic: bool, args: argparse.Namespace) -> float:
    settings = json.dumps([deterministic, args.size, args.alpha, args.steps, args.batch])
    done = subprocess.run(
        [sys.executable, "-c", WORKER.format(repo=str(REPO)), settings],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_step"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="input side in pixels (default 160)")
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (default 1.0)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per side (default 20)")
    parser.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    args = parser.parse_args(argv)
    default = seconds_per_step(False, args)
    deterministic = seconds_per_step(True, args)
    print(
        f"MobileNetV2-{args.alpha} at {args.size} px, batch {args.batch}, {args.steps} steps, full fine-tune"
    )
    print(f"  default kernels:       {default:.3f} s/step")
    print(f"  deterministic kernels: {deterministic:.3f} s/step")
    print(f"  ratio deterministic / default: {deterministic / default:.2f}x")


if __name__ == "__main__":
    main()
