"""``python -m edge classify|bench|camera``: the runtime's command line, with no TensorFlow needed.

The ``skinlesion`` CLI reuses these pieces: ``add_classify_args`` / ``run_classify``, ``add_bench_args`` /
``run_bench``, ``add_camera_args`` / ``run_camera_command``, or simply :func:`main`.

Exit status: 0 when every image succeeded, 1 when any failed, 2 for usage errors (bad arguments, a
missing or invalid model).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from edge.bundle import DEFAULT_BUNDLE, load_bundle, read_card, shipped_bundles
from edge.card import CARD_FILE
from edge.classifier import BACKENDS, KERAS_SUFFIXES, Classifier
from edge.errors import SkinlesionError
from edge.labels import read_labels
from edge.output import csv_rows, format_prediction, prediction_json
from edge.variants import names as variant_names

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic", ".heif"}
)
TEXT_TOP_K = 3  # classes shown per image in text output when --top-k is not given
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DISTRIBUTION = "skinlesion"
# Modules outside the base install -> the extra that brings them (pyproject.toml's optional-dependencies).
EXTRAS = {
    "tensorflow": "build",
    "tf_keras": "build",
    "tensorflow_model_optimization": "build",
    "pandas": "build",
    "sklearn": "build",
    "matplotlib": "build",
    "gradio": "app",
    "pillow_heif": "app",
    "gradio_client": "dev",
    "pytest": "dev",
    "playwright": "dev",
    "psutil": "dev",
}
EXAMPLES = {
    "python -m edge": "python -m edge classify --bundle msid photo.jpg",
    "classify": "python -m edge classify --bundle ham10000 --top-k 3 photos/",
    "bench": "python -m edge bench models/pretrained/ham10000 --threads 1,2 --variant int8",
    "camera": "python -m edge camera --bundle ham10000 --interval 2 --limit 10",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m edge`` with ``argv`` (default: sys.argv[1:]) and returns the exit status.

    Argument errors exit through argparse's ``SystemExit(2)``, as every argparse program does.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.run(args)
    except ModuleNotFoundError as error:
        message = missing_extra_message(error, f"python -m edge {args.command}")
        if message is None:
            raise
        return _usage(sys.stderr, message)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m edge`` parser; each subcommand's namespace carries its ``run(args)`` function."""
    parser = argparse.ArgumentParser(
        prog="python -m edge",
        epilog=example_epilog(EXAMPLES["python -m edge"]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The skinlesion edge runtime: classify images, benchmark a model, classify camera "
        "frames. No TensorFlow needed.",
    )
    add_version_arg(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, add_args, help_text in (
        ("classify", add_classify_args, "classify images and folders of images"),
        ("bench", add_bench_args, "latency, throughput and memory of a model"),
        ("camera", add_camera_args, "classify camera frames live"),
    ):
        add_args(
            commands.add_parser(
                name,
                help=help_text,
                description=help_text[0].upper() + help_text[1:] + ".",
                epilog=example_epilog(EXAMPLES[name]),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


# -- version, examples, missing extras ------------------------------------------------------------------------


def code_version() -> str:
    """The installed distribution's version, or a hint when the code runs from a checkout uninstalled."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed; `pip install -e .` records its version)"


def version_text() -> str:
    """The code's version, then each shipped bundle's name and card version."""
    lines = [f"{DISTRIBUTION} {code_version()}"]
    for name, folder in shipped_bundles().items():
        try:
            card = read_card(folder / CARD_FILE)
            lines.append(f"bundle {name}: {card.name} {card.version} ({folder})")
        except SkinlesionError as error:
            lines.append(f"bundle {name}: unreadable card ({error})")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """``--version``: like argparse's, but reads the bundles' cards only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def add_version_arg(parser: argparse.ArgumentParser) -> None:
    """``--version``: the code's version and the shipped bundles' card versions."""
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the code's version and each shipped bundle's card version, then exit",
    )


def example_epilog(*examples: str) -> str:
    """The ``--help`` footer: one example command per line."""
    return "example:\n" + "\n".join(f"  {example}" for example in examples)


def missing_extra_message(error: ModuleNotFoundError, command: str) -> str | None:
    """What to install when ``command`` needs a module of an extra the install lacks (None: not ours)."""
    module = (error.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (
        f"`{command}` needs {module}, which the base install leaves out; install it with "
        f'pip install "{DISTRIBUTION}[{extra}]"'
    )


# -- shared model options ---------------------------------------------------------------------------------


def add_model_args(parser: argparse.ArgumentParser, *, model_argument: bool = False) -> None:
    """--bundle / --model (or a positional MODEL) / --labels / --variant / --threads / --delegate / --backend.

    Args:
        parser: The (sub)command parser.
        model_argument: Take the model as a positional ``MODEL`` (a bundle folder, ``.tflite`` or ``.keras``)
            instead of ``--bundle`` / ``--model``, as ``skinlesion predict MODEL IMAGE...`` does.
    """
    if model_argument:
        parser.add_argument(
            "model",
            type=Path,
            metavar="MODEL",
            help="a bundle folder or a shipped bundle's name ("
            f"{', '.join(shipped_bundles()) or 'none'}), a .tflite file or a .keras file",
        )
    else:
        source = parser.add_mutually_exclusive_group()
        shipped = ", ".join(shipped_bundles()) or "none"
        source.add_argument(
            "--bundle",
            type=Path,
            metavar="DIR",
            help=f"model bundle folder, or a shipped bundle's name ({shipped}) (default: "
            f"{DEFAULT_BUNDLE.name})",
        )
        source.add_argument(
            "--model",
            type=Path,
            metavar="FILE",
            help="a bare .tflite file (or a .keras file, run with TensorFlow)",
        )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="labels for a model file, one class per "
        "line (default: labels.txt beside the model, then the model's TFLite metadata)",
    )
    parser.add_argument(
        "--variant",
        help=f"bundle variant: {', '.join(variant_names())} (default: the first present in that order)",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="interpreter CPU threads (default: the runtime's)"
    )
    parser.add_argument("--delegate", help="'edgetpu', 'gpu' or a delegate library path")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="tflite",
        help="'keras' runs the bundle's float reference with TensorFlow (default: tflite)",
    )


def open_classifier(args: argparse.Namespace) -> Classifier:
    """The Classifier that the model options in ``args`` describe.

    Raises:
        SkinlesionError: The model, bundle or labels cannot be used (the caller exits with status 2).
    """
    path = getattr(args, "model", None) or getattr(args, "bundle", None) or DEFAULT_BUNDLE
    return open_model(
        path,
        variant=args.variant,
        labels_file=args.labels,
        threads=args.threads,
        delegate=args.delegate,
        backend=args.backend,
    )


def open_model(
    path: str | os.PathLike,
    *,
    variant: str | None = None,
    labels_file: Path | None = None,
    threads: int | None = None,
    delegate: str | None = None,
    backend: str = "tflite",
) -> Classifier:
    """A Classifier for a bundle folder, a ``.tflite`` file or a ``.keras`` file (run with TensorFlow).

    Raises:
        SkinlesionError: The model, bundle or labels cannot be used (the CLI exits with status 2).
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        if labels_file is not None:
            raise SkinlesionError(
                "--labels goes with a model file (--model); a bundle's labels come from its card"
            )
        bundle = load_bundle(path)  # its errors say what a bundle folder needs
        return Classifier(bundle, variant=variant, num_threads=threads, delegate=delegate, backend=backend)
    if variant is not None:
        raise SkinlesionError(f"--variant selects a file inside a bundle, but {path} is a single model file")
    if labels_file is not None and not labels_file.is_file():
        raise SkinlesionError(f"--labels {labels_file} not found")
    labels = read_labels(labels_file) if labels_file else None
    backend = "keras" if path.suffix.lower() in KERAS_SUFFIXES else backend
    return Classifier(path, labels=labels, num_threads=threads, delegate=delegate, backend=backend)


# -- classify -----------------------------------------------------------------------------------------------


def add_classify_args(parser: argparse.ArgumentParser, *, model_argument: bool = False) -> None:
    """Arguments of ``classify``; with ``model_argument`` those of ``skinlesion predict MODEL IMAGE...``."""
    add_model_args(parser, model_argument=model_argument)
    parser.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE|FOLDER",
        help="image files, or folders searched recursively for images",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        metavar="N",
        help=f"classes shown per image (text default {TEXT_TOP_K}, JSON default all)",
    )
    parser.add_argument("--tta", action="store_true", help="average over flips and rotations (8x slower)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines)")
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="OUT",
        help="write a CSV row per image as it is "
        "classified, with every class probability and an error column",
    )
    parser.set_defaults(run=run_classify)


def run_classify(
    args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Classifies every image; an unreadable one is reported (stderr, CSV error column) and skipped."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if args.top_k is not None and args.top_k < 1:
        return _usage(stderr, f"--top-k must be >= 1, got {args.top_k}")
    if args.csv is not None and not args.csv.parent.is_dir():
        return _usage(stderr, f"--csv {args.csv}: folder {args.csv.parent} does not exist")
    try:
        classifier = open_classifier(args)
    except (SkinlesionError, ValueError) as error:
        return _usage(stderr, str(error))
    print(
        f"model {classifier.model_path} ({classifier.variant or 'bare file'}) on "
        f"{classifier.interpreter_name}",
        file=stderr,
        flush=True,
    )
    register_heif()
    count = failed = 0
    # Rows stream straight to the CSV (no temp + rename) so a long run on a Pi keeps what it has done.
    with csv_rows(args.csv, classifier.labels) as write_row:
        for path in iter_images(args.images, stderr):
            count += 1
            try:
                prediction = classifier.classify(path, tta=args.tta)
            except SkinlesionError as error:
                failed += 1
                print(f"error: {error}", file=stderr, flush=True)
                if args.json:
                    print(json.dumps({"source": str(path), "error": str(error)}), file=stdout, flush=True)
                write_row(str(path), None, str(error))
                continue
            if args.json:
                print(json.dumps(prediction_json(prediction, args.top_k)), file=stdout, flush=True)
            else:
                print(format_prediction(prediction, args.top_k or TEXT_TOP_K), file=stdout, flush=True)
            write_row(str(path), prediction, "")
    if count == 0:
        return _usage(
            stderr,
            "no images found in "
            + ", ".join(str(p) for p in args.images)
            + " (looked for "
            + ", ".join(sorted(IMAGE_EXTENSIONS))
            + ")",
        )
    if failed:
        print(f"{failed} of {count} images failed", file=stderr)
    return EXIT_FAILED if failed else EXIT_OK


def iter_images(paths: Sequence[Path], stderr: IO[str] | None = None) -> Iterator[Path]:
    """Files as given (whatever their extension, missing ones included so they get reported), and image
    files under folders, recursively, in sorted order, skipping hidden files."""
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        found = False
        for child in sorted(path.rglob("*")):
            is_image = child.suffix.lower() in IMAGE_EXTENSIONS and not child.name.startswith(".")
            if is_image and child.is_file():
                found = True
                yield child
        if not found and stderr is not None:
            print(f"warning: no images under {path}", file=stderr)


def register_heif() -> bool:
    """Lets Pillow open iPhone HEIC/HEIF photos when the optional pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener  # noqa: PLC0415 - optional, not in the base install
    except ImportError:
        return False
    register_heif_opener()
    return True


# -- bench ---------------------------------------------------------------------------------------------------


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench`` (``skinlesion bench``)."""
    parser.add_argument(
        "model",
        type=Path,
        nargs="?",
        metavar="MODEL",
        help=f"bundle folder, shipped bundle name or .tflite file (default: {DEFAULT_BUNDLE.name})",
    )
    parser.add_argument(
        "--threads", default="1", help="comma-separated thread counts, e.g. 1,2,4 (default: 1)"
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument(
        "--variant",
        default="all",
        help=f"'all' or comma-separated variants of {', '.join(variant_names())}, e.g. int8,float32",
    )
    parser.add_argument(
        "--image", type=Path, help="JPEG decoded on every pipeline run (default: a synthetic 600x450 JPEG)"
    )
    parser.add_argument("--delegate", help="'edgetpu', 'gpu' or a delegate library path")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run_bench)


def run_bench(
    args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Benchmarks the model and prints a table or JSON."""
    from edge.bench import benchmark, format_table  # noqa: PLC0415 - only this command needs it

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        return _usage(stderr, f"--threads must be comma-separated integers, got {args.threads!r}")
    variants = None if args.variant == "all" else [v.strip() for v in args.variant.split(",") if v.strip()]
    if args.image is not None and not args.image.is_file():
        return _usage(stderr, f"--image {args.image} not found")
    model = args.model or DEFAULT_BUNDLE
    try:
        results = benchmark(
            model,
            variants=variants,
            threads=threads,
            runs=args.runs,
            warmup=args.warmup,
            image=args.image,
            delegate=args.delegate,
            progress=lambda line: print(line, file=stderr, flush=True),
        )
    except (SkinlesionError, ValueError) as error:
        return _usage(stderr, str(error))
    if args.json:
        print(
            json.dumps(
                {"model": str(model), "machine": machine_info(), "results": [r.to_dict() for r in results]},
                indent=2,
            ),
            file=stdout,
        )
    else:
        print(format_table(results), file=stdout)
    return EXIT_OK


def machine_info() -> dict[str, object]:
    """Where a benchmark ran, so numbers from different hosts are not mixed up."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


# -- camera --------------------------------------------------------------------------------------------------


def add_camera_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``camera``."""
    add_model_args(parser)
    parser.add_argument(
        "--device",
        type=int,
        default=0,
        help="OpenCV camera index (default: 0; picamera2 is used instead when installed)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between classified frames (default: 1)"
    )
    parser.add_argument("--limit", type=int, help="stop after this many frames")
    parser.add_argument("--tta", action="store_true", help="average over flips and rotations")
    parser.add_argument("--show", action="store_true", help="show frames with the prediction in a window")
    parser.set_defaults(run=run_camera_command)


def run_camera_command(
    args: argparse.Namespace,
    *,
    frames=None,  # noqa: ANN001 - any iterable of arrays
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Classifies camera frames until Ctrl-C (exit 0). ``frames`` replaces the camera (tests, files)."""
    from edge.camera import camera_frames, run_camera  # noqa: PLC0415 - only this command needs it

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if args.interval < 0 or (args.limit is not None and args.limit < 1):
        return _usage(stderr, "--interval must be >= 0 and --limit >= 1")
    try:
        classifier = open_classifier(args)
    except (SkinlesionError, ValueError) as error:
        return _usage(stderr, str(error))
    try:
        source = frames if frames is not None else camera_frames(args.device)
        return run_camera(
            classifier,
            source,
            interval=args.interval,
            limit=args.limit,
            tta=args.tta,
            show=args.show,
            out=lambda line: print(line, file=stdout, flush=True),
        )
    except SkinlesionError as error:
        print(f"error: {error}", file=stderr)
        return EXIT_FAILED


# -- helpers ----------------------------------------------------------------------------------------------


def _usage(stderr: IO[str], message: str) -> int:
    print(f"error: {message}", file=stderr)
    return EXIT_USAGE
