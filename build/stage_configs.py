"""The small configs nested in the stage configs of ``build.config`` (the split, augmentation, class
balance) and the named tables a config may refer to (label maps, resize filters).

They live at the bottom of ``build/``, so that a config loads (and is checked) without the data
readers, the tf.data pipeline or TensorFlow; ``build.make`` imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

# The ISIC archive's 9 names onto HAM10000 codes. Squamous cell carcinoma joins akiec (HAM's akiec
# includes Bowen's disease, an intraepithelial SCC); both keratosis kinds are HAM's bkl.
ISIC_ARCHIVE_TO_HAM = {
    "actinic keratosis": "akiec",
    "squamous cell carcinoma": "akiec",
    "basal cell carcinoma": "bcc",
    "pigmented benign keratosis": "bkl",
    "seborrheic keratosis": "bkl",
    "dermatofibroma": "df",
    "melanoma": "mel",
    "nevus": "nv",
    "vascular lesion": "vasc",
}
LABEL_MAPS = {"isic-archive": ISIC_ARCHIVE_TO_HAM}
# Pillow's filters antialias when shrinking; "point" samples bilinearly at the output pixels' centres
# with no antialiasing, the way GPU texture sampling (and MediaPipe Tasks' resize) does it.
FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "nearest": Image.Resampling.NEAREST,
    "point": None,
}


@dataclass(frozen=True)
class SplitConfig:
    """How a data set is divided.

    Attributes:
        fractions: Share of images for train, val and test; must sum to 1.
        seed: Seed of the shuffle; the same seed and data give the same split.
    """

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(
                f"split fractions must be three non-negative numbers summing to 1, got {self.fractions}"
            )


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation applied to training images (all ranges symmetric around "no change").

    Attributes:
        flip: Random horizontal and vertical flips (dermoscopy has no up or left).
        rotate_90: Random multiples of 90 degrees (square inputs only).
        rotation: Extra random rotation, in degrees, up to this value.
        shift: Random translation, as a fraction of the side.
        zoom: Random zoom in or out, as a fraction (0.2 = 0.8x..1.2x).
        brightness: Random brightness change, as a fraction of 255.
        contrast: Random contrast factor range (0.2 = 0.8x..1.2x).
        saturation: Random saturation factor range.
        hue: Random hue shift (fraction of the colour wheel).
        noise: Standard deviation of Gaussian pixel noise, in 0..255 units.
        crop_area: Random-resized crop: range of the crop's area as a fraction of the source image
            ((1, 1) = the whole image, the runtime's framing). See ``build.make.framing.random_crop``.
        crop_aspect: Range of the crop's aspect (width / height in source pixels), drawn log-uniformly;
            empty = the source's own aspect.
        resample_filters: Filters drawn per image to resize the crop (:data:`FILTERS`:
            Pillow's, and ``point`` for the unantialiased bilinear of GPU runtimes); empty = bilinear.
        blur: Largest Gaussian blur radius (px at the model's size), applied to half the images.
        jpeg: Share of images re-compressed as JPEG, at a quality drawn from ``jpeg_quality``.
        jpeg_quality: Range of that JPEG quality (inclusive).
        sharpen: Share of images unsharp-masked at source resolution before the crop is resized (a
            sharper camera than the training data's: HAM10000's 200x150 files are softer than its
            600x450 originals, which the ISIC test set and phones show).
        color_constancy: Share of images shown under a neutral light: Shades-of-Gray colour constancy
            (Finlayson and Trezzi 2004, p = 6), the step ISIC entries applied to every image, here an
            augmentation, so the model learns to see past a device's colour cast while the runtime does
            nothing MediaPipe would not.
    """

    flip: bool = True
    rotate_90: bool = True
    rotation: float = 20.0
    shift: float = 0.08
    zoom: float = 0.15
    brightness: float = 0.1
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.02
    noise: float = 3.0
    crop_area: tuple[float, float] = (1.0, 1.0)
    crop_aspect: tuple[float, ...] = ()
    resample_filters: tuple[str, ...] = ()
    blur: float = 0.0
    jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    sharpen: float = 0.0
    color_constancy: float = 0.0

    def __post_init__(self) -> None:
        if len(self.crop_area) != 2 or not 0 < self.crop_area[0] <= self.crop_area[1] <= 1:
            raise ValueError(
                f"augment.crop_area must be [low, high] with 0 < low <= high <= 1, got {self.crop_area}"
            )
        if self.crop_aspect and (
            len(self.crop_aspect) != 2 or not 0 < self.crop_aspect[0] <= self.crop_aspect[1]
        ):
            raise ValueError(
                f"augment.crop_aspect must be [] or [low, high] with 0 < low <= high, got {self.crop_aspect}"
            )
        unknown = sorted(set(self.resample_filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"augment.resample_filters: unknown {unknown}; choose from {sorted(FILTERS)}")
        if (
            not 0 <= self.jpeg <= 1
            or len(self.jpeg_quality) != 2
            or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100
        ):
            raise ValueError(
                f"augment.jpeg must be a share in [0, 1] and jpeg_quality [low, high] in 1..100, got "
                f"{self.jpeg} and {self.jpeg_quality}"
            )
        if not 0 <= self.sharpen <= 1:
            raise ValueError(f"augment.sharpen must be a share in [0, 1], got {self.sharpen}")
        if not 0 <= self.color_constancy <= 1:
            raise ValueError(f"augment.color_constancy must be a share in [0, 1], got {self.color_constancy}")

    @property
    def frames(self) -> bool:
        """Whether training images are framed (cropped, resampled, degraded) per batch."""
        return (
            self.crop_area != (1.0, 1.0)
            or bool(self.crop_aspect)
            or bool(self.resample_filters)
            or bool(self.blur)
            or bool(self.jpeg)
            or bool(self.sharpen)
            or bool(self.color_constancy)
        )


@dataclass(frozen=True)
class MixConfig:
    """Training examples made of two images, with targets mixed in the same proportion (float training
    only: QAT learns from whole images, to keep what the float model learned).

    Per batch, ``cutmix`` of the time a box of each image is replaced by the same box of its partner
    (CutMix, Yun et al. 2019), ``mixup`` of the time the two images are blended (mixup, Zhang et al.
    2018), otherwise nothing; the partner is another image of the batch, and the share of each image
    (the box's area left, or the blend's weight) is drawn from Beta(alpha, alpha).

    Attributes:
        cutmix: Share of batches mixed by CutMix.
        cutmix_alpha: Beta parameter of CutMix's share (1 = uniform).
        mixup: Share of batches mixed by mixup.
        mixup_alpha: Beta parameter of mixup's share (small = mostly one image).
    """

    cutmix: float = 0.0
    cutmix_alpha: float = 1.0
    mixup: float = 0.0
    mixup_alpha: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.cutmix <= 1 and 0 <= self.mixup <= 1 and self.cutmix + self.mixup <= 1):
            raise ValueError(
                f"train.mix.cutmix and train.mix.mixup are shares of batches, each in [0, 1] and together "
                f"at most 1, got {self.cutmix} and {self.mixup}"
            )
        if self.cutmix_alpha <= 0 or self.mixup_alpha <= 0:
            raise ValueError(
                f"train.mix.cutmix_alpha and mixup_alpha must be > 0, got {self.cutmix_alpha} and "
                f"{self.mixup_alpha}"
            )

    @property
    def mixes(self) -> bool:
        return bool(self.cutmix or self.mixup)


@dataclass(frozen=True)
class BalanceConfig:
    """How classes are balanced during training.

    Attributes:
        mode: ``"oversample"`` draws classes with probability proportional to count**power
            (power 0 = fully balanced, 1 = natural frequencies), ``"undersample"`` caps every class at
            ``max_per_class`` images per epoch, ``"class_weight"`` keeps natural sampling and weights
            the loss by inverse frequency, ``"none"`` does nothing.
        power: Exponent of the class counts for ``oversample``.
        max_per_class: Cap for ``undersample`` (0 = the smallest class count).
    """

    mode: str = "oversample"
    power: float = 0.5
    max_per_class: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("oversample", "undersample", "class_weight", "none"):
            raise ValueError(
                f"balance mode must be oversample|undersample|class_weight|none, got {self.mode!r}"
            )
