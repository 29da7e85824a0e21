"""Why a model refused a photo, in words a patient can act on, and which other served model fits it.

The abstain rule (``edge.abstain``) refuses a photo whose image statistics lie far from the training
images'. Its distance means nothing to a patient, but the statistics that lie farthest out do: a large
dark share is a dark photo, a low centre contrast a spot that is not in the middle. :func:`photo_problems`
names those, from :data:`PROBLEMS`; :func:`fit` says how well a photo fits a model's training images, so
the page can offer the model that fits better.

    >>> photo_problems(pixels, card.abstain["pixel_check"])
    ('The photo is too dark.',)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.abstain import FEATURE_NAMES, dermoscopy_distance, image_features
from edge.card import ModelCard

# A statistic this many of its training standard deviations out is unusual enough to name (the
# training images rarely pass 3; the dark, off-centre and flat photos we tried reach 6 to 11).
UNUSUAL_Z = 3.0
MAX_PROBLEMS = 2  # more than two complaints read as "your photo is hopeless"


@dataclass(frozen=True)
class Problem:
    """A photo problem a patient can fix, and the statistics that reveal it.

    Attributes:
        text: What was wrong with the photo, in plain words.
        signs: ``(feature name, direction)`` pairs from ``edge.abstain.FEATURE_NAMES``: +1 when a high
            value shows the problem, -1 when a low one does.
    """

    text: str
    signs: tuple[tuple[str, int], ...]


PROBLEMS = (
    Problem("The photo is too dark.", (("dark_share", 1), ("p95_luma", -1), ("mean_r", -1), ("mean_g", -1))),
    Problem("The photo is too bright or washed out.", (("p95_luma", 1), ("mean_g", 1), ("mean_b", 1))),
    Problem(
        "The photo looks blurred or shows no detail.",
        (("log_fine_detail", -1), ("log_gradient_energy", -1), ("log_coarse_gradient", -1)),
    ),
    Problem(
        "The spot is not in the middle of the picture.",
        (("log_centre_contrast_ratio", -1), ("border_minus_centre_luma", 1)),
    ),
    Problem(
        "The picture shows a lot besides the skin (a wide area, hair, clothes or background).",
        (("edge_share", 1), ("quadrant_luma_spread", 1), ("log_chroma_detail", 1)),
    ),
    Problem(
        "The colours do not look like skin (coloured light, a filter, or objects in the picture).",
        (("non_skin_share", 1), ("mean_yellow_blue", -1)),
    ),
)


def photo_problems(pixels: np.ndarray, pixel_check: Mapping[str, Any]) -> tuple[str, ...]:
    """The :data:`PROBLEMS` this photo shows most clearly (at most :data:`MAX_PROBLEMS`), worst first.

    Args:
        pixels: The preprocessed RGB uint8 image the model saw.
        pixel_check: The card's ``abstain["pixel_check"]`` (training mean and inverse covariance).
    """
    # The marginal spread of each statistic: the diagonal of the covariance the card stores inverted.
    spread = np.sqrt(
        np.maximum(np.diag(np.linalg.inv(np.asarray(pixel_check["inv_cov"], dtype=np.float64))), 1e-12)
    )
    z = (image_features(pixels) - np.asarray(pixel_check["mean"], dtype=np.float64)) / spread
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    scored = []
    for problem in PROBLEMS:
        strength = max(direction * z[index[name]] for name, direction in problem.signs)
        if strength >= UNUSUAL_Z:
            scored.append((strength, problem.text))
    return tuple(text for _, text in sorted(scored, reverse=True)[:MAX_PROBLEMS])


def fit(pixels: np.ndarray, card: ModelCard) -> float | None:
    """How far the photo lies from the model's training images, as a share of its refusal limit.

    Below 1 the model's pixel check accepts the photo; None when the card has no pixel check.
    """
    pixel_check = card.abstain.get("pixel_check") if card.abstain else None
    if not pixel_check:
        return None
    return dermoscopy_distance(pixels, pixel_check) / float(pixel_check["max_distance"])


def refused_by_pixel_check(pixels: np.ndarray, card: ModelCard) -> bool:
    """Whether the card's pixel check refuses this photo (as ``edge.abstain.abstain_reason`` decides)."""
    share = fit(pixels, card)
    return share is not None and share > 1.0


def better_fit(pixels: np.ndarray, current: str, cards: Mapping[str, ModelCard]) -> str | None:
    """The name of another served model whose pixel check accepts a photo that ``current``'s refuses.

    Of several, the one the photo fits best; None when ``current`` accepts the photo or no other does.
    """
    if current not in cards or not refused_by_pixel_check(pixels, cards[current]):
        return None
    fits = {name: fit(pixels, card) for name, card in cards.items() if name != current}
    accepting = {name: share for name, share in fits.items() if share is not None and share <= 1.0}
    return min(accepting, key=accepting.get) if accepting else None
