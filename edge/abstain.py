"""The abstain rule: when the runtime should say "I can't tell" instead of naming a class.

The rule is a dict stored in the bundle's card (``card.abstain``) and fitted on the validation split by
the build. An empty rule never abstains.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def abstain_reason(probabilities: np.ndarray, pixels: np.ndarray, rule: dict[str, Any]) -> str | None:
    """Returns why the model should not answer for this image, or None when it may answer.

    Args:
        probabilities: Calibrated class probabilities, shape (num_classes,).
        pixels: The preprocessed RGB uint8 image the model saw, shape (H, W, 3).
        rule: The card's abstain rule, e.g. ``{"min_confidence": 0.4}``.
    """
    min_confidence = rule.get("min_confidence")
    if min_confidence is not None and float(np.max(probabilities)) < min_confidence:
        return (f"the model is unsure (top probability {float(np.max(probabilities)):.0%} "
                f"is below {min_confidence:.0%})")
    return None
