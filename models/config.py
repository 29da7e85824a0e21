"""What network to build, as a frozen dataclass that loads without TensorFlow (so do build configs)."""

from __future__ import annotations

from dataclasses import dataclass

from models.backbones import BACKBONES


@dataclass(frozen=True)
class ModelConfig:
    """What network to build.

    Attributes:
        backbone: A key of ``models.backbones.BACKBONES``.
        alpha: Width multiplier of MobileNet backbones.
        image_size: Square input side in pixels.
        weights: ``"imagenet"``, ``"none"``, or a path to a Keras Applications weight file.
        dropout: Dropout rate before the final dense layer.
        l1: L1 penalty on the final dense kernel.
        l2: L2 penalty on the final dense kernel.
    """

    backbone: str = "mobilenet_v2"
    alpha: float = 1.0
    image_size: int = 160
    weights: str = "imagenet"
    dropout: float = 0.3
    l1: float = 0.0
    l2: float = 1e-4

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
