"""Risk bands from the model's own operating points: where "moderate" and "high" start, and what they mean.

The build fits the thresholds on validation images for stated sensitivities and writes them to the
card (``card.operating_points``): ``"screening"`` (at least 9 in 10 malignant lesions at or above it)
starts the moderate band, ``"high"`` starts the high band. A card written before the build fitted
them falls back to :data:`DEFAULT_SCREENING` and the card's ``malignant_threshold``, and the band text
says so, so a new release never silently shifts what a band means.

    >>> scale = risk_scale(card)
    >>> scale.band(0.62).name
    'high'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.card import ModelCard

# Used only for cards without fitted operating points. 0.2 is about the share of malignant lesions
# among the HAM10000 training images (19.5%): above it the model finds a spot more suspicious than the
# average lesion it learned from. On the external set it flagged 94% of malignant lesions, but that was
# today's model; a fitted screening point follows each release.
DEFAULT_SCREENING = 0.2


@dataclass(frozen=True)
class OperatingPoint:
    """A malignant-probability threshold and how it did on the images it was fitted on.

    Attributes:
        threshold: Malignant probability (0..1) at which the point starts.
        sensitivity: Share of malignant lesions at or above the threshold; None when unknown.
        specificity: Share of benign lesions below it; None when unknown.
        fitted_on: The split it was fitted on (``"val"``); empty for a default.
    """

    threshold: float
    sensitivity: float | None = None
    specificity: float | None = None
    fitted_on: str = ""

    @classmethod
    def from_card(cls, name: str, data: Any) -> "OperatingPoint":
        """Reads ``card.operating_points[name]``; raises ValueError naming the point when it is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("threshold"), (int, float)):
            raise ValueError(f"operating point {name!r} needs a numeric 'threshold', got {data!r}")
        point = cls(
            float(data["threshold"]),
            _share(data.get("sensitivity")),
            _share(data.get("specificity")),
            str(data.get("fitted_on") or ""),
        )
        if not 0.0 < point.threshold < 1.0:
            raise ValueError(
                f"operating point {name!r} threshold must lie strictly between 0 and 1, got {point.threshold}"
            )
        return point


@dataclass(frozen=True)
class RiskBand:
    """A range of malignant probability and what it means for a patient.

    Attributes:
        name: Machine name, also the CSS class suffix (``risk-low``).
        title: Short word shown in the badge.
        lower: Smallest malignant probability in this band.
        summary: One sentence on what the model sees.
        meaning: What the band has meant on the images its threshold was fitted on, in plain words.
        urgency: How soon to see a doctor, 0 (routine) .. 3 (as soon as possible).
    """

    name: str
    title: str
    lower: float
    summary: str
    meaning: str
    urgency: int


@dataclass(frozen=True)
class RiskScale:
    """The bands of one model, lowest first, and whether their thresholds were fitted for it."""

    bands: tuple[RiskBand, ...]
    fitted: bool

    def band(self, malignant_probability: float) -> RiskBand:
        """The band that ``malignant_probability`` (0..1) falls in."""
        if not 0.0 <= malignant_probability <= 1.0:
            raise ValueError(f"malignant_probability must lie in 0..1, got {malignant_probability}")
        return [band for band in self.bands if malignant_probability >= band.lower][-1]


def risk_scale(card: ModelCard) -> RiskScale:
    """The low / moderate / high bands of ``card``'s model, from its operating points when it has them.

    Raises:
        ValueError: An operating point is malformed, or "screening" does not lie below "high".
    """
    points = card.operating_points or {}
    fitted = "screening" in points and "high" in points
    screening = (
        OperatingPoint.from_card("screening", points["screening"])
        if "screening" in points
        else OperatingPoint(DEFAULT_SCREENING)
    )
    high = (
        OperatingPoint.from_card("high", points["high"])
        if "high" in points
        else OperatingPoint(float(card.malignant_threshold))
    )
    if screening.threshold >= high.threshold:
        raise ValueError(
            f"{card.name}: the screening threshold ({screening.threshold:g}) must lie below the "
            f"high one ({high.threshold:g}); check operating_points in its model card"
        )
    default_note = (
        "These bands use default thresholds ({:.0%} and {:.0%}), not ones fitted for this model, "
        "so how many skin cancers land in each is not known."
    ).format(screening.threshold, high.threshold)
    return RiskScale(
        bands=(
            RiskBand(
                "low",
                "Low",
                0.0,
                "The model sees mostly features of harmless spots.",
                _low_meaning(screening) if fitted else default_note,
                0,
            ),
            RiskBand(
                "moderate",
                "Moderate",
                screening.threshold,
                "The model sees some features that also occur in skin cancers.",
                _moderate_meaning(screening) if fitted else default_note,
                2,
            ),
            RiskBand(
                "high",
                "High",
                high.threshold,
                "The model sees features that often occur in skin cancers.",
                _high_meaning(high) if fitted else default_note,
                3,
            ),
        ),
        fitted=fitted,
    )


def in_ten(share: float) -> str:
    """A share as a patient reads it: ``0.91 -> "about 9 in 10"``, ``0.97 -> "almost all"``."""
    if share >= 0.95:
        return "almost all"
    if share < 0.05:
        return "almost none"
    return f"about {max(1, round(10 * share))} in 10"


def _low_meaning(screening: OperatingPoint) -> str:
    if screening.sensitivity is None:
        return "A low band does not rule skin cancer out."
    missed = in_ten(1 - screening.sensitivity)
    return (
        f"On the images this was checked on, {missed} skin cancers also landed here: a low band does not "
        "rule skin cancer out."
    )


def _moderate_meaning(screening: OperatingPoint) -> str:
    if screening.sensitivity is None:
        return "Many spots here turn out harmless."
    words = f"{_capital(in_ten(screening.sensitivity))} skin cancers land here or higher"
    if screening.specificity is not None:
        words += f", and so do {in_ten(1 - screening.specificity)} harmless spots"
    return words + ": many spots here turn out harmless."


def _high_meaning(high: OperatingPoint) -> str:
    if high.sensitivity is None:
        return "Some spots here still turn out harmless."
    words = f"{_capital(in_ten(high.sensitivity))} skin cancers land here"
    if high.specificity is not None:
        words += f", and only {in_ten(1 - high.specificity)} harmless spots do"
    return words + "."


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _share(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
