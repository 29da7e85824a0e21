"""The abstain head's gate: a file ships only if its head answers the training data's kind and refuses
what it never learned from.

Measured on the exported file itself (the int8 rounding included): the share of validation images it
answers, of the negative sources' other half it refuses (``build.make.negatives``: the head learned only
from the fit half) and of synthetic images it refuses (``benchmarks.trust``'s draw, not the head's, at
the input size and at a photo's size through the runtime's resize)::

    >>> checks = measure_head(path, spec, val_pixels, unseen_negatives(config.export, spec))
    >>> failures = head_failures(variant, checks, config.export)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from build.config import ExportConfig
from build.make.framing import runtime_view
from build.make.negatives import SYNTHETIC_PER_KIND, negative_paths, photo_size, synthetic_images
from edge.abstain import HEAD_REFUSE_AT
from edge.preprocess import InputSpec, load_image


def unseen_negatives(export: ExportConfig, spec: InputSpec, *, seed: int = 0) -> list[np.ndarray]:
    """The negative sources' other half, framed as the runtime frames it."""
    return [
        load_image(path, spec) for path in negative_paths(export.abstain_negatives, seed=seed, fit_half=False)
    ]


def measure_head(
    path: Path, spec: InputSpec, val_pixels: np.ndarray, negatives: list[np.ndarray]
) -> dict[str, float | int]:
    """What the file's head does: shares answered (validation) and refused (unseen negatives, synthetic)."""
    from converters.validate import run_tflite

    def refused(pixels: np.ndarray) -> float:
        other, _ = run_tflite(path, pixels, spec, output=1)
        return float(np.mean(other[:, 1] >= HEAD_REFUSE_AT))

    # Drawn at the input size, and at a photo's size reaching the model through the runtime's resize.
    synthetic = [
        image
        for images in synthetic_images(SYNTHETIC_PER_KIND, (spec.height, spec.width)).values()
        for image in images
    ] + [
        runtime_view(image, spec)
        for images in synthetic_images(SYNTHETIC_PER_KIND, photo_size(spec)).values()
        for image in images
    ]
    checks: dict[str, float | int] = {
        "val_answered": 1.0 - refused(np.asarray(val_pixels)),
        "synthetic_refused": refused(np.stack(synthetic)),
        "n_val": len(val_pixels),
        "n_synthetic": len(synthetic),
    }
    if negatives:
        checks.update(negatives_refused=refused(np.stack(negatives)), n_negatives=len(negatives))
    return checks


def head_failures(variant: str, checks: dict, export: ExportConfig) -> list[str]:
    """Every threshold the file's head misses, as one sentence each."""
    failures = []
    if checks["val_answered"] < export.abstain_min_answered:
        failures.append(
            f"{variant}: the abstain head answers {checks['val_answered']:.1%} of {checks['n_val']} validation "
            f"images, below export.abstain_min_answered {export.abstain_min_answered:.1%}"
        )
    if "negatives_refused" in checks and checks["negatives_refused"] < export.abstain_min_refused:
        failures.append(
            f"{variant}: the abstain head refuses {checks['negatives_refused']:.1%} of {checks['n_negatives']} "
            f"unseen images of {', '.join(export.abstain_negatives)}, below export.abstain_min_refused "
            f"{export.abstain_min_refused:.1%}"
        )
    if checks["synthetic_refused"] < export.abstain_min_synthetic_refused:
        failures.append(
            f"{variant}: the abstain head refuses {checks['synthetic_refused']:.1%} of {checks['n_synthetic']} "
            "synthetic noise, flat and colour images, below export.abstain_min_synthetic_refused "
            f"{export.abstain_min_synthetic_refused:.1%}"
        )
    return failures
