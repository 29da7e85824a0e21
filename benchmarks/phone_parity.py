"""Does a phone give the answer the demo gives? MediaPipe Tasks' ImageClassifier against ``edge`` on photos.

    python -m benchmarks.phone_parity models/pretrained/ham10000 --variant int8

MediaPipe gets each full-resolution photo as a phone app hands it over (``mp.Image`` of the decoded
file, resized by MediaPipe's own filter); ``edge.Classifier`` gets the same file through the one
preprocessing. Prints JSON: top-1 agreement, the largest probability gap a user would see, and, for a
file with the in-graph abstain head, agreement on "I can't tell". ``--pre-resized`` also feeds
MediaPipe the runtime's preprocessed pixels, which separates the resize filter from everything else.
``--pooled 1,2,4`` asks what an in-graph k x k average pool in front of the network would buy: each photo is
point-sampled (bilinear without antialiasing, as MediaPipe and GPU runtimes resize) to k times the input,
averaged k x k, and run through the same model, against the runtime.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_IMAGES = SHARED / "ham10000-fullres-sample" / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def mediapipe_scores(
    model_path: Path, images: list, labels: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """MediaPipe's class scores (N, C) in ``labels`` order and its abstain head's "other" score (N,) or None.

    ``images`` are file paths (decoded by MediaPipe) or uint8 RGB arrays.
    """
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(model_path)), max_results=-1
    )
    scores, others = [], []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in images:
            picture = (
                mp.Image.create_from_file(str(image))
                if isinstance(image, (str, Path))
                else mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            )
            heads = classifier.classify(picture).classifications
            by_name = {c.category_name: c.score for c in heads[0].categories}
            scores.append([by_name.get(label, 0.0) for label in labels])
            if len(heads) > 1:
                others.append({c.category_name: c.score for c in heads[1].categories}.get("other", 0.0))
    return np.asarray(scores), (np.asarray(others) if others else None)


def pooled_pixels(path: Path, size: tuple[int, int], pool: int) -> np.ndarray:
    """``path`` resized as an unantialiased runtime would to ``pool`` times ``size`` (w, h), then averaged
    ``pool`` x ``pool`` down to ``size``: what a network with an in-graph average pool in front would see."""
    from PIL import Image

    from build.make.framing import resize_region

    with Image.open(path) as image:
        photo = np.asarray(image.convert("RGB"))
    width, height = size
    box = (0.0, 0.0, float(photo.shape[1]), float(photo.shape[0]))
    big = resize_region(photo, box, (width * pool, height * pool), "point").astype(np.float32)
    return np.round(big.reshape(height, pool, width, pool, 3).mean(axis=(1, 3))).astype(np.uint8)


def parity(
    bundle: Path,
    variant: str | None,
    images: list[Path],
    *,
    pre_resized: bool = False,
    pools: tuple[int, ...] = (),
) -> dict:
    """Agreement of MediaPipe and ``edge`` on ``images`` for one bundle variant."""
    from edge.abstain import HEAD_REFUSE_AT
    from edge.classifier import Classifier, apply_temperature, runtime_temperature

    classifier = Classifier(bundle, variant=variant, num_threads=1)
    labels = list(classifier.labels)
    edge_probs, edge_other = [], []
    for path in images:
        pixels = classifier.preprocess(path)
        edge_probs.append(classifier.probabilities_from_pixels(pixels))
        edge_other.append(classifier.abstain_score(pixels))
    edge_probs = np.asarray(edge_probs)
    temperature = runtime_temperature(classifier.card)
    refuse_at = float((classifier.card.abstain.get("head") or {}).get("refuse_at", HEAD_REFUSE_AT))

    def compare(scores: np.ndarray, others: np.ndarray | None, *, calibrated: bool = False) -> dict:
        # A bundle exported before the temperature moved into the graph: MediaPipe shows the raw softmax.
        shown = scores
        result = {
            "top1_agreement": float(np.mean(shown.argmax(1) == edge_probs.argmax(1))),
            "top1_disagreements": int(np.sum(shown.argmax(1) != edge_probs.argmax(1))),
            "max_abs_probability_gap": float(np.abs(shown - edge_probs).max()),
            "mean_abs_probability_gap": float(np.abs(shown - edge_probs).mean()),
        }
        if temperature != 1.0 and not calibrated:
            recalibrated = apply_temperature(scores, temperature)
            result["max_abs_gap_if_the_phone_applied_the_temperature"] = float(
                np.abs(recalibrated - edge_probs).max()
            )
        if others is not None and edge_other[0] is not None:
            result["abstain_head_agreement"] = float(
                np.mean((others >= refuse_at) == (np.asarray(edge_other) >= refuse_at))
            )
            result["mediapipe_refused"] = float(np.mean(others >= refuse_at))
        return result

    report = {
        "bundle": str(bundle),
        "variant": classifier.variant,
        "images": len(images),
        "temperature_in_graph": temperature == 1.0,
        "abstain_head_in_graph": classifier.has_abstain_head,
        "mediapipe_on_the_photo": compare(*mediapipe_scores(classifier.model_path, images, labels)),
    }
    if pre_resized:
        pixels = [classifier.preprocess(path) for path in images]
        report["mediapipe_on_runtime_pixels"] = compare(
            *mediapipe_scores(classifier.model_path, pixels, labels)
        )
    size = (classifier.card.input.width, classifier.card.input.height)
    for pool in pools:
        scores = [classifier.probabilities_from_pixels(pooled_pixels(path, size, pool)) for path in images]
        report[f"point_resize_with_{pool}x{pool}_pool"] = compare(np.asarray(scores), None, calibrated=True)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.phone_parity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("bundle", type=Path, help="bundle folder (e.g. models/pretrained/ham10000)")
    parser.add_argument("--variant", default="int8", help="bundle variant to run (default: int8)")
    parser.add_argument(
        "--images",
        type=Path,
        default=DEFAULT_IMAGES,
        help="folder of photos (default: ../shared/data/ham10000-fullres-sample/images)",
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    parser.add_argument(
        "--pre-resized", action="store_true", help="also feed MediaPipe the runtime's preprocessed pixels"
    )
    parser.add_argument(
        "--pooled",
        default="",
        help="comma-separated k: simulate an in-graph k x k average pool behind an unantialiased resize",
    )
    args = parser.parse_args(argv)
    try:
        pools = tuple(int(k) for k in args.pooled.split(",") if k.strip())
    except ValueError:
        parser.error(f"--pooled {args.pooled!r}: give whole numbers such as 1,2,4")
    if any(k < 1 for k in pools):
        parser.error(f"--pooled {args.pooled!r}: each k must be at least 1")
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder of photos")
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        images = images[: args.limit]
    if not images:
        parser.error(f"no .jpg/.png photos in {args.images}")
    started = time.perf_counter()
    report = parity(args.bundle, args.variant, images, pre_resized=args.pre_resized, pools=pools)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
