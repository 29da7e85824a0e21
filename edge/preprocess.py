"""THE preprocessing: anything a user hands over -> RGB uint8 pixels of the model's input size.

Training decodes every image once through :func:`load_image` into its cache, int8 calibration and
validation read from that cache, and the edge runtime and the web demo call it per image. There is
no second copy of the resize policy, the filter or the normalization anywhere in the project.

    >>> pixels = load_image("lesion.jpg", InputSpec(height=224, width=224))
    >>> pixels.shape, pixels.dtype
    ((224, 224, 3), dtype('uint8'))
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

RESIZE_POLICIES = ("center_crop", "stretch")
RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear antialiases when shrinking, so one filter serves all sizes.
BACKGROUND = (255, 255, 255)  # Transparent pixels are composited on white, as viewers show them.
DEFAULT_MAX_PIXELS = 64_000_000  # ~ a 64 MP phone photo; larger headers are refused before decoding.
MIN_SIDE = 16  # Smaller images cannot show a lesion; refuse them instead of upscaling noise.


@dataclass(frozen=True)
class InputSpec:
    """What a model expects as input; stored in the bundle's card and read back from it.

    Attributes:
        height: Input height in pixels.
        width: Input width in pixels.
        resize: ``"center_crop"`` crops the largest centred box of the input's aspect ratio, then
            resizes (keeps shapes undistorted); ``"stretch"`` resizes the whole image.
        mean: Per-channel value subtracted from uint8 pixels before a float model sees them.
        std: Per-channel divisor applied after ``mean``. The default maps 0..255 to -1..1, what
            MobileNet-family backbones were trained on.
        max_pixels: Largest width*height accepted; protects against decompression bombs.
    """

    height: int
    width: int
    resize: str = "center_crop"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"InputSpec size must be positive, got {self.height}x{self.width}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values with std > 0, got mean={self.mean} std={self.std}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": 3, "dtype": "uint8", "resample": "bilinear",
                "background": list(BACKGROUND)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields}
        return cls(**kwargs)


def load_image(source: ImageSource, spec: InputSpec) -> np.ndarray:
    """Decodes ``source`` and returns RGB uint8 pixels of shape (spec.height, spec.width, 3).

    Args:
        source: A path, encoded bytes, a binary file object, a PIL image, or a uint8/uint16 array
            (H x W, H x W x 1|2|3|4).
        spec: Target size, resize policy and pixel limit.

    Raises:
        ImageError: The input is missing, empty, corrupt, truncated, too large, too small or not an
            image. The message names the source and the cause.
    """
    name = describe_source(source)
    image = open_rgb(source, max_pixels=spec.max_pixels, target=(spec.width, spec.height))
    if min(image.size) < MIN_SIDE:
        raise ImageError(f"{name}: image is {image.width}x{image.height} px, too small to show a lesion "
                         f"(at least {MIN_SIDE} px per side needed)")
    box = crop_box(image.size, (spec.width, spec.height), spec.resize)
    resized = image.resize((spec.width, spec.height), resample=RESAMPLE, box=box)
    return np.asarray(resized, dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels -> the float32 values a float model was trained on."""
    return (pixels.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)


def crop_box(size: tuple[int, int], target: tuple[int, int], policy: str) -> tuple[float, float, float, float]:
    """The region of an image of ``size`` (w, h) that is resized to ``target`` (w, h) under ``policy``."""
    width, height = size
    if policy == "stretch":
        return 0.0, 0.0, float(width), float(height)
    target_aspect = target[0] / target[1]
    if width / height > target_aspect:
        crop_w = height * target_aspect
        left = (width - crop_w) / 2
        return left, 0.0, left + crop_w, float(height)
    crop_h = width / target_aspect
    top = (height - crop_h) / 2
    return 0.0, top, float(width), top + crop_h


def open_rgb(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
             target: tuple[int, int] | None = None) -> Image.Image:
    """Decodes ``source`` into an upright RGB PIL image (EXIF orientation applied, alpha on white).

    ``target`` (w, h) lets JPEG decoding downscale in the DCT when the image is far larger than
    needed, which is most of the decode time for phone photos on a Raspberry Pi.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open_encoded(source, name)
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageError(f"{name}: image is {image.width}x{image.height} = {pixels:,} px, over the limit of "
                         f"{max_pixels:,} px (a decompression-bomb guard); downscale it or raise max_pixels")
    try:
        if target is not None and image.format == "JPEG":
            # Decode at the smallest 1/2, 1/4 or 1/8 DCT scale that still covers the target: the DCT
            # averages blocks (a good downscaler) and most of a phone photo's decode time disappears.
            image.draft("RGB", target)
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name}: cannot decode image ({error}); the file may be truncated or corrupt") from error


def describe_source(source: Any) -> str:
    """A short human name for an input, used in every error message."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(source)} bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {source.shape}>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _open_encoded(source: Any, name: str) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: file not found")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file")
        stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - PIL keeps it open until load()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes):
            raise ImageError(f"{name}: file object must be opened in binary mode ('rb')")
        stream = io.BytesIO(data)
    else:
        raise ImageError(f"{name}: unsupported input type {type(source).__name__}; pass a path, bytes, "
                         "a binary file object, a PIL image or a numpy array")
    if stream.seek(0, io.SEEK_END) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            # We apply our own, configurable pixel limit right after open().
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageError(f"{name}: image dimensions are absurdly large ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{name}: not an image Pillow can read (unknown or corrupt format)") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: cannot read image header ({error})") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    image.load()
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image), describe_source(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _array_to_rgb(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)) or array.size == 0:
        raise ImageError(f"{name}: expected an H x W or H x W x 1|2|3|4 image array, got shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.uint16 or array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 65535:
            raise ImageError(f"{name}: integer pixels must lie in 0..65535, got {array.min()}..{array.max()}")
        # 16-bit data is scaled to 8 bits rather than clipped, so a dark 16-bit scan stays visible.
        pixels = (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ImageError(f"{name}: float pixels must be finite and in 0..1; pass uint8 for 0..255 data")
        pixels = np.round(array * 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported pixel dtype {array.dtype}; pass uint8 (0..255) pixels")
    if pixels.ndim == 2:
        return Image.fromarray(pixels, mode="L").convert("RGB")
    if pixels.shape[2] == 2:
        pixels = np.dstack([pixels[:, :, 0]] * 3 + [pixels[:, :, 1]])
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="RGBA" if pixels.shape[2] == 4 else "RGB")
    return _to_rgb(image)
