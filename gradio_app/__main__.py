"""``skinlesion app`` / ``python -m gradio_app``: serve the demo on the installed bundles.

$ python -m gradio_app                          # every bundle under models/pretrained/
$ python -m gradio_app --bundle ham10000 --port 8080   # a shipped bundle by name, or any bundle folder
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from edge.bundle import DEFAULT_BUNDLE, resolve_bundle, shipped_bundles
from edge.cli import example_epilog
from edge.errors import SkinlesionError
from edge.variants import names as variant_names

# The `skinlesion app` entry of build.cli.EXAMPLES is this same line (a test checks it).
EXAMPLE = "skinlesion app --bundle ham10000 --bundle msid"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the demo server (``skinlesion app`` and ``python -m gradio_app``)."""
    parser = argparse.ArgumentParser(
        prog="skinlesion app",
        description="Serve the skin-lesion web demo.",
        epilog=example_epilog(EXAMPLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = ", ".join(shipped_bundles()) or "none installed"
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help=f"a shipped bundle's name ({names}), a bundle folder, or a folder of bundles "
        f"(repeatable; default: every bundle under {DEFAULT_BUNDLE.parent})",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help=f"TFLite variant to serve ({', '.join(variant_names())}; default: the bundle's preferred one)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="interpreter CPU threads per model (default: the interpreter's choice)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 serves "
        "the local network)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link (sends traffic through Gradio's servers)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests decoded and classified at once; more wait in the queue (default: 4, "
        "AppConfig.concurrency_limit)",
    )
    parser.add_argument("--no-explain", action="store_true", help="never compute Grad-CAM overlays")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo server's arguments."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Loads the bundles, builds the demo and serves it until interrupted. Returns an exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes of localhost
    # Imported here so that `--help` answers without loading Gradio.
    from gradio_app.app import (
        AppConfig,
        build_demo,
        configure_process,
        find_bundles,
        launch_options,
        load_models,
    )

    roots = [resolve_bundle(root) for root in args.bundle] if args.bundle else [DEFAULT_BUNDLE.parent]
    folders = [folder for root in roots for folder in find_bundles(root)]
    if not folders:
        print(
            f"error: no model bundle found in {', '.join(map(str, roots))} (a bundle is a folder with "
            "model_card.json); pass --bundle DIR or build one with `skinlesion build`",
            file=sys.stderr,
        )
        return 2
    config = AppConfig(explain=not args.no_explain)
    if args.concurrency is not None:
        config = dataclasses.replace(config, concurrency_limit=args.concurrency)
    try:
        models = load_models(folders, variant=args.variant, num_threads=args.threads)
    except (SkinlesionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_process(config)
    demo = build_demo(models, config)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
