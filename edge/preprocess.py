"""THE preprocessing: anything a user hands over -> RGB uint8 pixels of the model's input size.

Training decodes every image once through :func:`load_image` into its cache, int8 calibration and
validation read from that cache, and the edge runtime and the web demo call it per image. There is
no second copy of the resize policy, the filter or the normalization anywhere in the project.

    >>> pixels = load_image("lesion.jpg", InputSpec(height=224, width=224))
    >>> pixels.shape, pixels.dtype
    ((224, 224, 3), dtype('uint8'))
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge.decode_budget import DEFAULT_MAX_DECODE_BYTES, DecodeBudget, decode_bytes
from edge.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

RESIZE_POLICIES = ("center_crop", "stretch")
RESAMPLE = (
    Image.Resampling.BILINEAR
)  # Pillow's bilinear antialiases when shrinking, so one filter serves all sizes.
BACKGROUND = (255, 255, 255)  # Transparent pixels are composited on white, as viewers show them.
DEFAULT_MAX_PIXELS = 64_000_000  # ~ a 64 MP phone photo; larger headers are refused before decoding.
MIN_SIDE = 16  # Smaller images cannot show a lesion; refuse them instead of upscaling noise.
# Phone photos are 4:3 to 16:9 (panoramas ~4:1); a longer strip squeezed into a square shows nothing
# the model has seen, so it is refused with a reason instead of answered.
MAX_ASPECT = 5.0
REDUCE_ABOVE_PIXELS = 16_000_000  # Non-JPEG images larger than this are box-reduced right after decoding.
ORIENTATION_TAG = 0x0112
# The budget every decode in this process reserves from (the web demo swaps in its own size).
DECODE_BUDGET = DecodeBudget(DEFAULT_MAX_DECODE_BYTES)

log = logging.getLogger(__name__)
_PILLOW_WARNINGS_LOCK = threading.Lock()
_REDUCIBLE = ("L", "I", "F", "RGB", "RGBA", "LA")  # modes Image.reduce averages correctly
# EXIF orientation -> the transpose that makes the image upright (the EXIF 2.3 table, as Pillow applies it).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
        return {
            **dataclasses.asdict(self),
            "channels": 3,
            "dtype": "uint8",
            "resample": "bilinear",
            "background": list(BACKGROUND),
        }

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
        ImageError: The input is missing, empty, corrupt, truncated, too large, too small, a strip longer
            than :data:`MAX_ASPECT` to 1, or not an image, or would need more memory to decode than :data:`DECODE_BUDGET` allows. The message
            names the source and the cause.
    """
    name = describe_source(source)
    with _decoded_rgb(source, name, max_pixels=spec.max_pixels, target=(spec.width, spec.height)) as image:
        if min(image.size) < MIN_SIDE:
            raise ImageError(
                f"{name}: image is {image.width}x{image.height} px, too small to show a lesion "
                f"(at least {MIN_SIDE} px per side needed)"
            )
        aspect = max(image.size) / min(image.size)
        if aspect > MAX_ASPECT:
            raise ImageError(
                f"{name}: image is {image.width}x{image.height} px, a strip {aspect:.0f} times longer "
                f"than wide (at most {MAX_ASPECT:g}:1 is read); crop the photo around the skin spot"
            )
        box = crop_box(image.size, (spec.width, spec.height), spec.resize)
        resized = image.resize((spec.width, spec.height), resample=RESAMPLE, box=box)
    return np.asarray(resized, dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels -> the float32 values a float model was trained on."""
    return (pixels.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)


# Test-time views, in the order the exported graph takes them (converters.views): the image, its
# left-right, up-down and both-ways mirror images, then the same four of the transposed image.
VIEW_COUNTS = (1, 2, 4, 8)
VIEW_FLIPS = ((), (2,), (1,), (1, 2))  # NHWC axes each of the first four views reverses


def check_view_count(views: int) -> None:
    """Raises ValueError unless ``views`` is one of :data:`VIEW_COUNTS`."""
    if views not in VIEW_COUNTS:
        raise ValueError(
            f"test-time views must be one of {', '.join(map(str, VIEW_COUNTS))} (the image, its mirror "
            f"images and rotations), got {views!r}"
        )


def dihedral_views(images: np.ndarray, views: int) -> list[np.ndarray]:
    """The first ``views`` of the mirror images of a batch of NHWC images, in the graph's order."""
    check_view_count(views)
    bases = [images, images.transpose(0, 2, 1, 3)]
    return [np.flip(bases[k // 4], VIEW_FLIPS[k % 4]) for k in range(views)]


def crop_box(
    size: tuple[int, int], target: tuple[int, int], policy: str
) -> tuple[float, float, float, float]:
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


def open_rgb(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, target: tuple[int, int] | None = None
) -> Image.Image:
    """Decodes ``source`` into an upright RGB PIL image (EXIF orientation applied, alpha on white).

    ``target`` (w, h) lets decoding downscale early when the image is far larger than needed: JPEGs in
    the DCT (most of a phone photo's decode time on a Raspberry Pi), other formats with
    ``Image.reduce`` once they exceed :data:`REDUCE_ABOVE_PIXELS`. A PIL image passed in is never
    modified; when it needs no change it is returned as is.
    """
    name = describe_source(source)
    with _decoded_rgb(source, name, max_pixels=max_pixels, target=target) as image:
        return image


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


@contextlib.contextmanager
def _decoded_rgb(
    source: ImageSource, name: str, *, max_pixels: int, target: tuple[int, int] | None
) -> Iterator[Image.Image]:
    """Yields ``source`` as an upright RGB image while its decode memory is reserved in the budget."""
    if isinstance(source, np.ndarray):
        yield _array_to_rgb(source, name)  # already decoded by the caller: nothing to budget
        return
    notes: list[str] = []
    owned = not isinstance(source, Image.Image)
    image = _open_encoded(source, name, notes) if owned else source
    stream = image.fp if owned else None  # ours to close: Pillow leaves a file object it was given open
    try:
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise ImageError(
                f"{name}: image is {image.width}x{image.height} = {pixels:,} px, over the limit of "
                f"{max_pixels:,} px (a decompression-bomb guard); downscale it or raise max_pixels"
            )
        try:
            if target is not None and image.format == "JPEG":
                # Decode at the smallest 1/2, 1/4 or 1/8 DCT scale that still covers the target: the DCT
                # averages blocks (a good downscaler) and most of a phone photo's decode time disappears.
                image.draft("RGB", target)
        except (OSError, ValueError) as error:
            raise ImageError(
                f"{name}: cannot decode image ({error}); the file may be truncated or corrupt"
            ) from error
        factor = _reduce_factor(image, target)
        with DECODE_BUDGET.reserve(decode_bytes(image.mode, image.size, reduced=factor > 1), name):
            try:
                image.load()
                method = _ORIENTATION.get(_orientation(image, notes))
                if factor > 1:
                    image = image.reduce(factor)
                if method is not None:
                    image = image.transpose(method)
                    image.info.pop("exif", None)  # its orientation tag no longer applies
                rgb = _to_rgb(image, name)
            except ImageError:
                raise
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                raise ImageError(
                    f"{name}: cannot decode image ({error}); the file may be truncated or corrupt"
                ) from error
            _report(name, notes)
            yield rgb
    finally:
        if stream is not None:
            stream.close()


def _reduce_factor(image: Image.Image, target: tuple[int, int] | None) -> int:
    """How much a huge image may be box-averaged right after decoding and still cover ``target``.

    Only images over :data:`REDUCE_ABOVE_PIXELS` are reduced (no data set the models learn from comes
    near it), so the pixels of ordinary inputs are exactly those of one resize from full resolution.
    """
    if target is None or image.width * image.height <= REDUCE_ABOVE_PIXELS or image.mode not in _REDUCIBLE:
        return 1
    # The shorter side must still cover the longer target side, whatever the EXIF rotation does.
    return max(1, min(image.size) // max(target))


def _orientation(image: Image.Image, notes: list[str]) -> int:
    """The EXIF orientation (1..8); what a damaged EXIF block makes Pillow say goes into ``notes``."""
    with _quiet_pillow(notes):
        try:
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
        except (OSError, ValueError, SyntaxError, struct.error) as error:
            notes.append(f"EXIF: {error}")
            orientation = 1
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        notes.append(f"EXIF orientation {orientation!r}")
        orientation = 1
    return orientation


@contextlib.contextmanager
def _quiet_pillow(notes: list[str]) -> Iterator[None]:
    """Collects Pillow's warnings into ``notes`` instead of printing them with Pillow's file paths.

    ``catch_warnings`` swaps process-wide state, so concurrent decodes take turns through the short,
    pixel-free steps (opening a header, parsing EXIF) that run under it.
    """
    with _PILLOW_WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # We apply our own, configurable pixel limit right after open().
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        finally:
            notes.extend(str(w.message).strip() for w in caught)


def _report(name: str, notes: list[str]) -> None:
    """One log line of ours for an image that decoded despite damaged metadata."""
    if not notes:
        return
    if any("exif" in note.lower() or "truncated file read" in note.lower() for note in notes):
        log.warning("%s: damaged EXIF metadata; used what could be read", name)
    else:
        log.warning("%s: %s", name, notes[0].splitlines()[0])


def _open_encoded(source: Any, name: str, notes: list[str]) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: file not found")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file")
        stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller once decoded
    elif isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes):
            raise ImageError(f"{name}: file object must be opened in binary mode ('rb')")
        stream = io.BytesIO(data)
    else:
        raise ImageError(
            f"{name}: unsupported input type {type(source).__name__}; pass a path, bytes, "
            "a binary file object, a PIL image or a numpy array"
        )
    try:
        if stream.seek(0, io.SEEK_END) == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
        stream.seek(0)
        with _quiet_pillow(notes):
            return Image.open(stream)
    except ImageError:
        stream.close()
        raise
    except Image.DecompressionBombError as error:
        stream.close()
        raise ImageError(f"{name}: image dimensions are absurdly large ({error})") from error
    except UnidentifiedImageError as error:
        stream.close()
        raise ImageError(f"{name}: not an image Pillow can read (unknown or corrupt format)") from error
    except (OSError, ValueError, SyntaxError) as error:
        stream.close()
        raise ImageError(f"{name}: cannot read image header ({error})") from error
    except BaseException:
        stream.close()
        raise


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    image.load()
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image), name)
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
    return _to_rgb(image, name)
