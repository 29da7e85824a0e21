"""int8 fidelity by quantization scheme: post-training quantization, QAT under tfmot's stock scheme, QAT
with per-channel depthwise kernels (``models.quantization``), and the latter trained towards the float
model's predictions instead of the labels (``qat.distillation = 1``), all from one trained float model.

Each QAT run calibrates its ranges on the same training images and trains the same steps at the same rate
(`build.make.qat.apply_qat` in a copy of the run folder); each int8 file is validated against the float model
on the run's validation split and scored on its test split:

    python -m benchmarks.qat_scheme runs/ham10000                 # 250 QAT steps at 2e-5 per scheme
    python -m benchmarks.qat_scheme runs/ham10000 --steps 500 --json runs/bench/qat-scheme.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from build.make.pipeline import calibration_sample
from build.make.context import RunContext, prepare
from build.make.results import read_float
from build.make.run import Run

FLOAT_FILES = ("model.keras", "best.weights.npz", "state.json", "log.csv", "summary.json", "result.json")
SCHEMES = ("ptq", "stock", "per-channel", "distilled")
# The weight of the float model's predictions in each QAT scheme's target; the rest learn from the labels.
DISTILLATION = {"distilled": 1.0}


def quantizers() -> dict:
    """Scheme name -> the function that wraps a float model for QAT."""
    import tensorflow_model_optimization as tfmot

    from build.make.qat import quantize_aware

    return {
        "stock": tfmot.quantization.keras.quantize_model,
        "per-channel": quantize_aware,
        "distilled": quantize_aware,
    }


def copy_float_stage(source: Run, target: Path) -> Run:
    """A run folder holding ``source``'s config, split and float model, and nothing after them."""
    shutil.rmtree(target, ignore_errors=True)
    (target / "float").mkdir(parents=True)
    for name in ("config.json", "split.csv"):
        shutil.copy(source.root / name, target / name)
    for name in FLOAT_FILES:
        if (source.root / "float" / name).exists():
            shutil.copy(source.root / "float" / name, target / "float" / name)
    return Run(target)


def int8_file(ctx: RunContext, scheme: str, train) -> Path:
    """Trains (QAT schemes) and exports one int8 candidate inside ``ctx.run``."""
    from build.make.qat import apply_qat
    from converters.export import export_tflite, load_keras_model
    from converters.quantization import QuantizationConfig

    config, spec, root = ctx.config, ctx.spec, ctx.run.root
    if scheme == "ptq":
        source = load_keras_model(root / "float" / "model.keras")
        quantization = QuantizationConfig.for_int8(
            calibration_sample(train, spec, config.export.calibration_images, config.train.seed)
        )
    else:
        qat = dataclasses.replace(config.qat, distillation=DISTILLATION.get(scheme, 0.0))
        source = load_keras_model(
            apply_qat(
                ctx.with_config(dataclasses.replace(config, qat=qat)),
                read_float(root, needed_by="qat"),
                quantize=quantizers()[scheme],
            ).path
        )
        quantization = QuantizationConfig.for_int8(None)
    return export_tflite(
        source, root / "model_int8.tflite", quantization, input_spec=spec, labels=list(ctx.classes)
    ).path


def compare_schemes(
    run_dir: Path, out: Path, *, steps: int, learning_rate: float, schemes: tuple[str, ...] = SCHEMES
) -> list[dict]:
    """One row per scheme: parity with the float model on validation, balanced accuracy on val and test."""
    from converters.validate import balanced_accuracy, run_tflite, validate_tflite

    source = Run(run_dir)
    float_path = source.root / "float" / "model.keras"
    if not float_path.exists():
        raise FileNotFoundError(
            f"{float_path} not found; train the float model first "
            f"(`skinlesion build --config ... --run {run_dir}`)"
        )
    config = source.load_config()
    config = dataclasses.replace(
        config,
        qat=dataclasses.replace(
            config.qat, enabled=True, epochs=1, steps_per_epoch=steps, learning_rate=learning_rate
        ),
    )
    ctx = prepare(source, config)
    spec = ctx.spec
    train, val, test = (ctx.images(split) for split in ("train", "val", "test"))
    rows = []
    for scheme in schemes:
        run = copy_float_stage(source, out / scheme)
        path = int8_file(dataclasses.replace(ctx, run=run), scheme, train)
        parity = validate_tflite(
            path, float_path, np.asarray(val.pixels), val.labels, input_spec=spec, variant="int8"
        )
        test_probs, _ = run_tflite(path, np.asarray(test.pixels), spec)
        rows.append(
            {
                "scheme": scheme,
                "top1_agreement": parity.top1_agreement,
                "mean_abs_diff": parity.mean_abs_diff,
                "mean_kl": parity.mean_kl,
                "val_balanced_accuracy_float": parity.balanced_accuracy_reference,
                "val_balanced_accuracy": parity.balanced_accuracy_tflite,
                "test_balanced_accuracy": balanced_accuracy(test.labels, test_probs.argmax(axis=1)),
                "file": str(path),
            }
        )
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    delta = 100 * (row["val_balanced_accuracy"] - row["val_balanced_accuracy_float"])
    return (
        f"{row['scheme']:12s} agreement {100 * row['top1_agreement']:5.1f} %  mean |dp| "
        f"{row['mean_abs_diff']:.3f}  mean KL {row['mean_kl']:.3f}  val {row['val_balanced_accuracy']:.3f} "
        f"({delta:+.1f} pt)  test {row['test_balanced_accuracy']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.qat_scheme", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", type=Path, help="a run folder with a trained float model")
    parser.add_argument("--steps", type=int, default=250, help="QAT steps per scheme")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument(
        "--schemes", default=",".join(SCHEMES), help=f"comma-separated, from {', '.join(SCHEMES)}"
    )
    parser.add_argument(
        "--out", type=Path, help="where the per-scheme run folders go (default: RUN-qat-scheme)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown:
        print(f"unknown scheme(s) {', '.join(unknown)}; choose from {', '.join(SCHEMES)}", file=sys.stderr)
        return 2
    out = args.out or args.run.with_name(args.run.name + "-qat-scheme")
    try:
        rows = compare_schemes(
            args.run, out, steps=args.steps, learning_rate=args.learning_rate, schemes=schemes
        )
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
