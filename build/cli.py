"""The ``skinlesion`` command: a thin shell over the stage functions.

    skinlesion data summary DATA...          counts, lesions, metadata plots, association rules
    skinlesion build --config FILE.toml       split -> float -> QAT -> export -> validate -> evaluate -> bundle
    skinlesion train|qat|export RUN           one stage on a run folder
    skinlesion validate MODEL --reference REF --data DATA
    skinlesion evaluate MODEL --data DATA     metrics.json + report
    skinlesion sweep --config FILE.toml       small hyperparameter search
    skinlesion sizes RUN --sizes 160 192      which input size a trained model scores best at
    skinlesion soup RUN RUN... --out DIR      the mean of runs' weights against each run and their ensemble
    skinlesion predict MODEL IMAGE...         (edge runtime, no TensorFlow)
    skinlesion bench MODEL                    (edge runtime, no TensorFlow)
    skinlesion app [--bundle DIR]             the Gradio demo

Everything that needs TensorFlow is imported inside its command, so ``predict`` and ``bench`` work on a
Raspberry Pi with only the base install.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

DEFAULT_RUNS = Path("runs")
# One example per command, shown at the end of its --help (and checked by tests/test_docs_commands.py).
EXAMPLES = {
    "skinlesion": "skinlesion predict ham10000 photo.jpg",
    "data": "skinlesion data summary ../shared/data/ham10000",
    "summary": "skinlesion data summary ../shared/data/ham10000 ../shared/data/isic-archive-9class",
    "build": "skinlesion build --config build/configs/msid.toml --set train.epochs=3",
    "train": "skinlesion train runs/ham10000",
    "qat": "skinlesion qat runs/ham10000",
    "export": "skinlesion export runs/ham10000 --publish models/pretrained/ham10000",
    "publish": "skinlesion publish runs/ham10000/bundle models/pretrained/ham10000",
    "validate": "skinlesion validate runs/ham10000/bundle/model_int8.tflite --reference "
    "runs/ham10000/bundle/reference.keras --data ../shared/data/ham10000 --run runs/ham10000 --split val",
    "evaluate": "skinlesion evaluate ham10000 --data ../shared/data/ham10000-fullres-sample",
    "compare": "skinlesion compare runs/eval-a runs/eval-b",
    "sweep": "skinlesion sweep --config build/configs/tiny.toml --trials 4",
    "sizes": "skinlesion sizes runs/ham10000 --sizes 160 176 192 208 224 --cache-dir runs/.cache",
    "soup": "skinlesion soup runs/ham10000 runs/ham10000-ema --out runs/soup --cache-dir runs/.cache",
    "predict": "skinlesion predict msid photo.jpg --json",
    "bench": "skinlesion bench models/pretrained/msid --threads 1,2",
    "app": "skinlesion app --bundle ham10000 --bundle msid",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skinlesion`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["app"]:
        # The demo owns its options (--bundle, --port, ...); argparse cannot pass them through a subparser.
        try:
            return _run_app(argv[1:])
        except ModuleNotFoundError as error:
            return _missing_extra(error, "skinlesion app")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from build.console import quiet_tensorflow

    quiet_tensorflow(verbose=args.verbose)
    try:
        return int(args.run(args) or 0)
    except ModuleNotFoundError as error:
        command = " ".join(
            ["skinlesion", args.command] + ([args.data_command] if args.command == "data" else [])
        )
        return _missing_extra(error, command)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; `--resume` continues from the last completed epoch", file=sys.stderr)
        return 130


def _missing_extra(error: ModuleNotFoundError, command: str) -> int:
    from edge.cli import missing_extra_message

    message = missing_extra_message(error, command)
    if message is None:
        raise error
    print(f"error: {message}", file=sys.stderr)
    return 2


def _add_command(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and ends with an example."""
    from edge.cli import example_epilog

    return commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=example_epilog(EXAMPLES[name]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    from edge.cli import add_bench_args, add_classify_args, add_version_arg, example_epilog
    from edge.variants import names as variant_names

    parser = argparse.ArgumentParser(
        prog="skinlesion",
        description=__doc__.split("\n\n")[0],
        epilog=example_epilog(EXAMPLES["skinlesion"]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_arg(parser)
    parser.add_argument(
        "--verbose", action="store_true", help="also show TensorFlow's own log lines (hidden by default)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = _add_command(commands, "data", "inspect data sets").add_subparsers(
        dest="data_command", required=True
    )
    summary = _add_command(data, "summary", "counts, lesions, metadata plots and association rules")
    summary.add_argument(
        "data",
        nargs="+",
        help="data sets (HAM10000 root, ISIC CSV, labels.csv folder, "
        "class folders); later ones are de-duplicated against earlier ones",
    )
    summary.add_argument(
        "--label-map",
        action="append",
        default=[],
        metavar="SOURCE=MAP",
        help="label map for a source, e.g. ../shared/data/isic-archive-9class=isic-archive "
        "(sources named isic-archive* get it automatically)",
    )
    summary.add_argument(
        "--out", type=Path, default=Path("runs/data-summary"), help="where plots and rules go"
    )
    summary.add_argument("--seed", type=int, default=42, help="split seed")
    summary.set_defaults(run=run_data_summary)

    build = _add_command(commands, "build", "the whole build, from data to a validated bundle")
    _add_build_args(build)
    _add_cache_arg(build)
    build.add_argument(
        "--publish",
        type=Path,
        metavar="DIR",
        help="also write the bundle here (e.g. models/pretrained/ham10000), atomically",
    )
    build.add_argument(
        "--finish-training",
        action="store_true",
        help="with --resume: end the interrupted training (float or QAT) at its best "
        "completed epoch instead of running the remaining epochs, then go on",
    )
    build.set_defaults(run=run_build)

    for name, help_text in (
        ("train", "float training (both phases, and the FixRes epochs when configured)"),
        ("qat", "quantization-aware training"),
        (
            "export",
            "TFLite export, validation against the float model, calibration, evaluation and the bundle",
        ),
    ):
        stage = _add_command(commands, name, help_text)
        stage.add_argument(
            "run_dir", type=Path, metavar="RUN", help="a run folder made by `skinlesion build`"
        )
        _add_cache_arg(stage)
        if name == "export":
            stage.add_argument("--publish", type=Path, metavar="DIR", help="also write the bundle here")
        stage.set_defaults(run=run_stage, stage=name)

    publish = _add_command(commands, "publish", "release a built bundle without exporting it again")
    publish.add_argument(
        "bundle", type=Path, metavar="BUNDLE", help="a run's bundle (e.g. runs/ham10000/bundle)"
    )
    publish.add_argument(
        "folder",
        type=Path,
        metavar="DIR",
        help="where the release goes (e.g. "
        "models/pretrained/ham10000); replaced atomically, without the float reference",
    )
    publish.set_defaults(run=run_publish)

    validate = _add_command(commands, "validate", "parity of a TFLite file against its float reference")
    validate.add_argument("model", type=Path, metavar="MODEL", help="a .tflite file")
    validate.add_argument("--reference", type=Path, required=True, help="the float .keras model")
    validate.add_argument("--data", required=True, help="a labelled data set (any supported layout)")
    validate.add_argument("--label-map", default=None, help="built-in label map for the data (isic-archive)")
    validate.add_argument("--split", default=None, help="only this split of a run's split.csv (with --run)")
    validate.add_argument(
        "--run", dest="run_dir", type=Path, default=None, help="run folder whose split.csv selects images"
    )
    validate.add_argument("--limit", type=int, default=0, help="at most this many images (0 = all)")
    validate.set_defaults(run=run_validate)

    evaluate = _add_command(commands, "evaluate", "metrics, plots and a report on any labelled data set")
    evaluate.add_argument(
        "model",
        type=Path,
        metavar="MODEL",
        help="a bundle folder or a shipped bundle's name (ham10000, msid), .tflite or .keras",
    )
    evaluate.add_argument("--data", required=True, help="a labelled data set (any supported layout)")
    evaluate.add_argument("--label-map", default=None, help="built-in label map for the data (isic-archive)")
    evaluate.add_argument(
        "--split",
        default=None,
        choices=("train", "val", "test"),
        help="re-derive this split from the bundle card's seed and fractions",
    )
    evaluate.add_argument(
        "--variant", default=None, help=f"bundle variant: {', '.join(variant_names())} (default: int8)"
    )
    evaluate.add_argument("--tta", action="store_true", help="average over flips and rotations")
    evaluate.add_argument(
        "--exclude",
        default=None,
        metavar="DATA",
        help="leave out the images (by image id) this data set also holds, e.g. the training data: "
        "another source that repeats some of them becomes an external test",
    )
    evaluate.add_argument("--out", type=Path, default=None, help="output folder (default: runs/eval-<model>)")
    evaluate.set_defaults(run=run_evaluate)

    compare = _add_command(commands, "compare", "is model B really better than A? (paired bootstrap)")
    compare.add_argument(
        "a",
        metavar="A",
        help="`skinlesion evaluate` --out folder or predictions.csv; join "
        "several with + to pool them (e.g. runs/eval-a-val+runs/eval-a-test)",
    )
    compare.add_argument("b", metavar="B", help="the same for the other model, on the same images")
    compare.add_argument(
        "--shared-only",
        action="store_true",
        help="compare on the images both evaluations hold (e.g. releases whose splits differ "
        "by a few images), and say how many were left out",
    )
    compare.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    compare.set_defaults(run=run_compare)

    sweep = _add_command(commands, "sweep", "random search over optimizer, learning rate, dropout, L2")
    _add_build_args(sweep)
    sweep.add_argument("--trials", type=int, default=6, help="number of configurations tried")
    sweep.set_defaults(run=run_sweep)

    sizes = _add_command(
        commands, "sizes", "which input size a trained float model scores best at, on validation (FixRes)"
    )
    sizes.add_argument("run_dir", type=Path, metavar="RUN", help="a run folder with float weights")
    sizes.add_argument(
        "--sizes", type=int, nargs="+", required=True, help="input sizes in pixels (the trained one is added)"
    )
    _add_float_weights_arg(sizes)
    _add_cache_arg(sizes)
    sizes.set_defaults(run=run_sizes)

    soup = _add_command(
        commands,
        "soup",
        "the mean of several runs' float weights, scored against each run and their ensemble",
    )
    soup.add_argument(
        "run_dirs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="run folders of one model and split (two or more)",
    )
    soup.add_argument("--out", type=Path, required=True, help="where soup.weights.npz and soup.json go")
    soup.add_argument(
        "--size",
        type=int,
        default=None,
        help="input size to score at (default: the first run's release size)",
    )
    _add_float_weights_arg(soup)
    _add_cache_arg(soup)
    soup.set_defaults(run=run_soup)

    predict = _add_command(commands, "predict", "classify images with the edge runtime")
    add_classify_args(predict, model_argument=True)
    bench = _add_command(commands, "bench", "latency, throughput and memory per variant")
    add_bench_args(bench)

    # Listed for --help; main() hands `skinlesion app ...` straight to the demo's own parser.
    _add_command(commands, "app", "the Gradio demo (skinlesion app --help for its options)")
    return parser


def _add_float_weights_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", default="best", choices=("best", "last"), help="float/best or float/last weights"
    )


def _add_cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where decoded images are cached (default: RUN/cache, ~1.3 GB for HAM10000); "
        "runs with the same data and input size can share one folder",
    )


def _add_build_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("build/configs/ham10000.toml"),
        help="a TOML build config (default: build/configs/ham10000.toml)",
    )
    parser.add_argument(
        "--data", nargs="+", default=None, help="data sources, replacing the config's data.sources"
    )
    parser.add_argument(
        "--run",
        dest="run_dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="run folder (default: runs/<config name>)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --run")
    parser.add_argument(
        "--strategy",
        choices=("auto", "one", "mirrored", "multiworker"),
        default=None,
        help="tf.distribute strategy (default: the config's)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )


def _load_build_config(args: argparse.Namespace):
    from build.config import load_config

    overrides = list(args.set)
    if args.data:
        overrides.append("data.sources=[" + ", ".join(f"'{d}'" for d in args.data) + "]")
    if args.strategy:
        overrides.append(f"train.strategy='{args.strategy}'")
    return load_config(args.config, overrides)


def run_build(args: argparse.Namespace) -> int:
    from build.build import build_all

    config = _load_build_config(args)
    run_dir = args.run_dir or DEFAULT_RUNS / config.name
    return build_all(
        run_dir,
        config,
        resume=args.resume,
        publish=args.publish,
        finish_training=args.finish_training,
        cache_dir=args.cache_dir,
    )


def run_stage(args: argparse.Namespace) -> int:
    from build.build import run_stage as stage_function

    return stage_function(
        args.run_dir, args.stage, publish=getattr(args, "publish", None), cache_dir=args.cache_dir
    )


def run_publish(args: argparse.Namespace) -> int:
    from converters.bundle import publish_bundle

    published = publish_bundle(args.bundle, args.folder)
    print(f"published: {published} ({', '.join(sorted(p.name for p in published.glob('*.tflite')))})")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from build.build import validate_command

    return validate_command(
        args.model,
        args.reference,
        args.data,
        label_map=args.label_map,
        run_dir=args.run_dir,
        split=args.split,
        limit=args.limit,
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from build.analysis.evaluate import run_evaluate

    out = args.out or DEFAULT_RUNS / f"eval-{args.model.name}"
    metrics = run_evaluate(
        args.model,
        args.data,
        variant=args.variant,
        tta=args.tta,
        split=args.split,
        out=out,
        label_map=args.label_map,
        exclude=args.exclude,
    )
    low, high = metrics.balanced_accuracy_interval
    print(
        f"balanced accuracy {metrics.balanced_accuracy:.4f} (95% interval {low:.4f}-{high:.4f}), "
        f"accuracy {metrics.accuracy:.4f} on {metrics.n} images -> {out}"
    )
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from build.analysis.significance import compare_predictions, format_comparison

    if args.resamples < 100:
        raise ValueError(f"--resamples {args.resamples} is too few for a 95% interval; use 1000 or more")
    comparison = compare_predictions(
        _pooled_predictions(args.a),
        _pooled_predictions(args.b),
        resamples=args.resamples,
        shared_only=args.shared_only,
    )
    print(format_comparison(comparison, str(args.a), str(args.b)))
    return 0


def _pooled_predictions(spec: str):
    """The predictions of one or more ``+``-joined evaluations, as one table."""
    import pandas as pd

    from build.analysis.significance import read_predictions

    return pd.concat([read_predictions(part) for part in spec.split("+")], ignore_index=True)


def run_sweep(args: argparse.Namespace) -> int:
    from build.analysis.sweep import sweep

    config = _load_build_config(args)
    run_dir = args.run_dir or DEFAULT_RUNS / f"{config.name}-sweep"
    sweep(run_dir, config, trials=args.trials)
    return 0


def run_sizes(args: argparse.Namespace) -> int:
    from build.analysis.input_size import RESULT_FILE, format_size_scores, score_input_sizes

    rows = score_input_sizes(args.run_dir, args.sizes, cache_dir=args.cache_dir, weights=args.weights)
    print(format_size_scores(rows))
    print(f"\nwritten to {args.run_dir / RESULT_FILE}")
    return 0


def run_soup(args: argparse.Namespace) -> int:
    from build.analysis.soup import RESULT_FILE, format_soup_scores, soup_runs

    rows = soup_runs(args.run_dirs, args.out, size=args.size, cache_dir=args.cache_dir, weights=args.weights)
    print(format_soup_scores(rows))
    print(f"\nwritten to {args.out / RESULT_FILE}")
    return 0


def run_data_summary(args: argparse.Namespace) -> int:
    from build.stage_configs import SplitConfig
    from build.analysis.summary import format_summary, summarize

    maps = dict(item.split("=", 1) for item in args.label_map)
    label_maps = [
        maps.get(d) or ("isic-archive" if Path(d).name.startswith("isic-archive") else None)
        for d in args.data
    ]
    started = time.perf_counter()
    result = summarize(list(args.data), label_maps, args.out, split=SplitConfig(seed=args.seed))
    print(format_summary(result))
    print(f"\nplots and rules written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def _run_app(argv: list[str]) -> int:
    from gradio_app.__main__ import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
