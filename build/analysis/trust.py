"""Fitting the abstain rule that ``edge.abstain`` applies, and measuring what it accepts and refuses.

Two checks, tuned on the validation split so that at least ``accept_rate`` of in-distribution images
still get an answer:

1. a one-class model of dermoscopy image statistics (mean + inverse covariance of
   ``edge.abstain.image_features`` over training images; the distance threshold is a high percentile of
   the validation images' distances), which refuses noise, flat and synthetic images and most clinical
   photos;
2. a minimum top probability, set as high as the remaining acceptance budget allows.

    >>> rule = fit_abstain_rule(train_pixels, val_pixels, val_probabilities)
    >>> card = dataclasses.replace(card, abstain=rule)

``python -m build.analysis.trust --data ../shared/data --size 192 --resize stretch`` fits the pixel check on the
HAM10000 training split and prints what it accepts of the test split, of other dermoscopy (non-HAM ISIC
archive images, the 600x450 HAM originals) and what it refuses of the MSID clinical photos and of
synthetic images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build.make.negatives import synthetic_images
from edge.abstain import FEATURE_NAMES, abstain_reason, image_features, mahalanobis

# One point above the 95% target: a rule tuned to exactly 95% on validation answered 94.2% of the test split.
DEFAULT_ACCEPT_RATE = 0.96
# The pixel check alone keeps this share of validation images; the confidence check may spend the rest
# of the budget down to accept_rate. 96.5% sits in the middle of the 95-97% band measured to work.
DEFAULT_PIXEL_QUANTILE = 0.965
# Ridge added to the covariance, as a share of its mean variance: keeps the inverse stable when two
# statistics are nearly collinear on the training images.
DEFAULT_RIDGE = 1e-3


@dataclass(frozen=True)
class AbstainReport:
    """How an abstain rule does on in-distribution and on out-of-distribution images.

    Attributes:
        accepted_in_distribution: Share of in-distribution images answered (not refused).
        n_in_distribution: How many in-distribution images were measured.
        rejected: Out-of-distribution set name -> share refused.
        n_rejected: Set name -> number of images in it.
    """

    accepted_in_distribution: float
    n_in_distribution: int
    rejected: dict[str, float]
    n_rejected: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dermoscopy_features(images: Iterable[np.ndarray]) -> np.ndarray:
    """``edge.abstain.image_features`` of every RGB uint8 image, stacked to (N, F)."""
    rows = [image_features(image) for image in images]
    if not rows:
        raise ValueError("no images given; the pixel check needs images to fit or measure on")
    return np.stack(rows)


def fit_abstain_rule(
    train_pixels: Iterable[np.ndarray],
    val_pixels: Iterable[np.ndarray],
    val_probs: np.ndarray | None,
    *,
    accept_rate: float = DEFAULT_ACCEPT_RATE,
    pixel_quantile: float = DEFAULT_PIXEL_QUANTILE,
) -> dict[str, Any]:
    """Fits the whole abstain rule stored in ``card.abstain``.

    Args:
        train_pixels: Preprocessed RGB uint8 training-split images (a list or an (N, H, W, 3) array).
        val_pixels: Preprocessed validation-split images, in the order of ``val_probs``.
        val_probs: (N, C) calibrated probabilities of the validation images, or None to fit the
            pixel check alone (no confidence threshold).
        accept_rate: Share of validation images the combined rule must still answer.
        pixel_quantile: Share the pixel check alone keeps; must be at least ``accept_rate``.

    Returns:
        ``{"pixel_check": {...}, "min_confidence": float | None, "accept_rate": float,
        "val_accepted": float, "n_val": int}``.
    """
    if not 0.0 < accept_rate <= pixel_quantile < 1.0:
        raise ValueError(
            f"need 0 < accept_rate <= pixel_quantile < 1, got accept_rate={accept_rate}, "
            f"pixel_quantile={pixel_quantile}"
        )
    val_features = dermoscopy_features(val_pixels)
    pixel_check, distances = _fit_pixel_check(
        dermoscopy_features(train_pixels), val_features, quantile=pixel_quantile, ridge=DEFAULT_RIDGE
    )
    accepted = distances <= pixel_check["max_distance"]
    min_confidence = None
    if val_probs is not None:
        val_probs = np.asarray(val_probs, dtype=np.float64)
        if val_probs.ndim != 2 or len(val_probs) != len(val_features):
            raise ValueError(
                f"val_probs must be (n_val_images, n_classes) = ({len(val_features)}, C), "
                f"got {val_probs.shape}"
            )
        top = val_probs.max(axis=1)
        min_confidence = _confidence_threshold(top, accepted, accept_rate)
        accepted &= top >= min_confidence
    return {
        "pixel_check": pixel_check,
        "min_confidence": min_confidence,
        "accept_rate": accept_rate,
        "val_accepted": float(accepted.mean()),
        "n_val": len(val_features),
    }


def acceptance_rate(
    rule: Mapping[str, Any], images: Iterable[np.ndarray], probabilities: np.ndarray | None = None
) -> float:
    """Share of ``images`` the rule answers. Without ``probabilities`` only the pixel check is applied."""
    images = list(images)
    if not images:
        raise ValueError("no images to measure the abstain rule on")
    if probabilities is None:
        rule = {k: v for k, v in rule.items() if k != "min_confidence"}
        probabilities = np.ones((len(images), 1))
    refused = [abstain_reason(p, image, dict(rule)) is not None for p, image in zip(probabilities, images)]
    return 1.0 - float(np.mean(refused))


def measure_abstain(
    rule: Mapping[str, Any],
    in_distribution: Iterable[np.ndarray],
    out_of_distribution: Mapping[str, Iterable[np.ndarray]],
    in_probabilities: np.ndarray | None = None,
    out_probabilities: Mapping[str, np.ndarray] | None = None,
) -> AbstainReport:
    """Acceptance on in-distribution images and rejection on each out-of-distribution set.

    Without probabilities only the pixel check is measured (a lower bound on what the full rule refuses).
    """
    in_distribution = list(in_distribution)
    out_probabilities = out_probabilities or {}
    rejected, counts = {}, {}
    for name, images in out_of_distribution.items():
        images = list(images)
        rejected[name] = 1.0 - acceptance_rate(rule, images, out_probabilities.get(name))
        counts[name] = len(images)
    return AbstainReport(
        accepted_in_distribution=acceptance_rate(rule, in_distribution, in_probabilities),
        n_in_distribution=len(in_distribution),
        rejected=rejected,
        n_rejected=counts,
    )


def _fit_pixel_check(
    train: np.ndarray, val: np.ndarray, *, quantile: float, ridge: float
) -> tuple[dict[str, Any], np.ndarray]:
    """The pixel check from feature matrices, and the validation distances it was placed with."""
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(train) <= 2 * len(FEATURE_NAMES):
        raise ValueError(
            f"{len(train)} training images are too few to fit {len(FEATURE_NAMES)} image statistics "
            f"and their covariance; use at least {2 * len(FEATURE_NAMES) + 1}"
        )
    mean = train.mean(axis=0)
    covariance = np.cov(train, rowvar=False)
    covariance += ridge * np.trace(covariance) / len(mean) * np.eye(len(mean))
    inv_cov = np.linalg.inv(covariance)
    distances = mahalanobis(val, mean, inv_cov)
    check = {
        "features": list(FEATURE_NAMES),
        "mean": mean.tolist(),
        "inv_cov": inv_cov.tolist(),
        "max_distance": float(np.quantile(distances, quantile)),
        "quantile": quantile,
        "n_train": len(train),
    }
    return check, distances


def _confidence_threshold(top_probability: np.ndarray, pixel_ok: np.ndarray, accept_rate: float) -> float:
    """The highest minimum top probability that still answers ``accept_rate`` of all images."""
    required = int(np.ceil(accept_rate * len(top_probability)))
    candidates = np.sort(top_probability[pixel_ok])[::-1]
    if len(candidates) < required:
        raise ValueError(
            f"the pixel check alone refuses {1 - pixel_ok.mean():.1%} of validation images, more "
            f"than 1 - accept_rate allows; raise pixel_quantile or lower accept_rate"
        )
    return float(candidates[required - 1]) if required else 0.0


def main(argv: list[str] | None = None) -> None:
    """Fits the pixel check on HAM10000 (lesion-grouped split) and measures it; prints JSON."""
    import pandas as pd

    from build.make.datasets import load_dataset, split_by_group

    from build.stage_configs import SplitConfig
    from edge.preprocess import RESIZE_POLICIES, InputSpec, load_image

    parser = argparse.ArgumentParser(prog="python -m build.analysis.trust", description=main.__doc__)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data",
        help="folder holding ham10000/ and msid/ (default: ../shared/data)",
    )
    parser.add_argument("--size", type=int, default=224, help="model input size in pixels (square)")
    parser.add_argument(
        "--resize",
        choices=RESIZE_POLICIES,
        default="center_crop",
        help="the model's resize policy (the card's input.resize)",
    )
    parser.add_argument("--out", type=Path, help="also write the rule and the report as JSON here")
    args = parser.parse_args(argv)
    spec = InputSpec(height=args.size, width=args.size, resize=args.resize)
    started = time.perf_counter()
    frame = split_by_group(load_dataset(args.data / "ham10000"), SplitConfig(seed=42))
    msid = load_dataset(args.data / "msid")

    def pixels(paths: Iterable[str]) -> list[np.ndarray]:
        return [load_image(path, spec) for path in paths]

    train = pixels(frame.loc[frame["split"] == "train", "path"])
    val = pixels(frame.loc[frame["split"] == "val", "path"])
    test = pixels(frame.loc[frame["split"] == "test", "path"])
    rule = fit_abstain_rule(train, val, None)
    ood = {
        "msid": pixels(msid["path"]),
        **{f"synthetic_{k}": v for k, v in synthetic_images(40, (args.size, args.size)).items()},
    }
    report = measure_abstain(rule, test, ood)
    # Dermoscopy the rule has never seen must pass too: other archives and the same lesions at full size.
    other = {}
    isic = args.data / "isic-archive-9class" / "labels.csv"
    if isic.is_file():
        table = pd.read_csv(isic)
        paths = [isic.parent / p for p in table.loc[~table["in_ham10000"].astype(bool), "path"]]
        other["isic_archive_not_in_ham10000"] = acceptance_rate(rule, pixels(paths))
    originals = sorted((args.data / "ham10000-fullres-sample" / "images").glob("*.jpg"))
    if originals:
        other["ham10000_originals_600x450"] = acceptance_rate(rule, pixels(originals))
    summary = {
        "input": spec.to_dict(),
        "val_accepted": rule["val_accepted"],
        "test": report.to_dict(),
        "accepted_other_dermoscopy": other,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        from build.atomic import write_text_atomic

        write_text_atomic(args.out / "abstain_rule.json", json.dumps(rule, indent=2) + "\n")
        write_text_atomic(args.out / "abstain_report.json", json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
