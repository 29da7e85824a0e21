"""How a training image is framed before the model sees it: a random crop of the source at its own
aspect, resized with one of the filters other runtimes use, maybe under a neutral light (colour
constancy), then the blur and JPEG a phone adds.

Training images are cached at their source aspect on a square canvas with some margin
(:func:`canvas_side`), so a crop can show any framing: the whole 4:3 image stretched to a square as
the runtime does it, a centre square as in the ISIC test set, or a close-up. Validation, test and
int8 calibration keep the runtime's one preprocessing (:func:`runtime_view` equals
``edge.preprocess.load_image`` on the cached source).

Everything random here is drawn from the ``numpy.random.Generator`` the caller hands in, which the
pipeline seeds from (seed, step): a batch is a pure function of its position in the run.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

from build.stage_configs import FILTERS
from edge.preprocess import RESAMPLE, InputSpec, crop_box

if TYPE_CHECKING:
    from build.stage_configs import AugmentConfig

# The canvas' long side over the model's input side: HAM10000's 200x150 images stay at full
# resolution for a 160 px model, so a close-up crop still has real detail.
CANVAS_MARGIN = 1.25
# Unsharp-mask ranges (source px, strength) of the ``sharpen`` augmentation. Measured on the 150 HAM
# originals: their 600x450 files, framed by the runtime, look to the network like their 200x150 copies
# unsharp-masked at radius 2 and 150 % (docs/experiments.md).
SHARPEN_RADIUS = (0.5, 2.5)
SHARPEN_PERCENT = (50.0, 200.0)
# Shades of Gray's norm: 1 is the grey world, infinity the white patch; 6 is what dermoscopy studies
# (Barata et al. 2015) and the ISIC 2018-2019 entries that used it chose.
SHADES_OF_GRAY_POWER = 6


def canvas_side(spec: InputSpec) -> int:
    """Side of the square canvas training images are cached on for a model of input ``spec``."""
    return int(round(max(spec.height, spec.width) * CANVAS_MARGIN))


def fit_on_canvas(image: Image.Image, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` resized (aspect kept, the runtime's filter) so its long side is ``side``, as a
    (side, side, 3) uint8 array with the image at the top left and zeros elsewhere, and the image's
    (height, width) on it."""
    scale = side / max(image.size)
    width, height = (max(1, min(side, round(n * scale))) for n in image.size)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[:height, :width] = np.asarray(image.resize((width, height), resample=RESAMPLE), dtype=np.uint8)
    return canvas, (height, width)


def runtime_view(source: np.ndarray, spec: InputSpec) -> np.ndarray:
    """What the runtime's preprocessing makes of a cached source image (H x W x 3, no canvas margin)."""
    if source.shape[:2] == (spec.height, spec.width):
        return np.asarray(source, dtype=np.uint8)
    image = Image.fromarray(np.asarray(source))
    box = crop_box(image.size, (spec.width, spec.height), spec.resize)
    return np.asarray(image.resize((spec.width, spec.height), resample=RESAMPLE, box=box), dtype=np.uint8)


def frame_batch(
    sources: list[np.ndarray], spec: InputSpec, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Frames each source image (H x W x 3 uint8, any size) to the model's input: (B, H, W, 3) uint8."""
    out = np.empty((len(sources), spec.height, spec.width, 3), dtype=np.uint8)
    for i, source in enumerate(sources):
        if config.sharpen and rng.random() < config.sharpen:
            source = sharpen(source, rng.uniform(*SHARPEN_RADIUS), rng.uniform(*SHARPEN_PERCENT))
        box = random_crop(source.shape[1], source.shape[0], config, rng)
        name = (
            config.resample_filters[rng.integers(len(config.resample_filters))]
            if config.resample_filters
            else "bilinear"
        )
        framed = resize_region(source, box, (spec.width, spec.height), name)
        if config.color_constancy and rng.random() < config.color_constancy:
            framed = shades_of_gray(framed)
        if config.blur and rng.random() < 0.5:
            framed = blur(framed, rng.uniform(0.3, config.blur))
        if config.jpeg and rng.random() < config.jpeg:
            framed = recompress(framed, int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
        out[i] = framed
    return out


def random_crop(
    width: int, height: int, config: AugmentConfig, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """A random-resized-crop box (left, top, right, bottom) in source pixels.

    The area is a uniform fraction ``config.crop_area`` of the source and the aspect (crop width over
    height, in source pixels) log-uniform in ``config.crop_aspect`` (empty: the source's own aspect, so
    the default full-area crop is exactly the runtime's stretched frame). A crop larger than the
    source along a side is clipped to it.
    """
    low, high = config.crop_area
    aspect_low, aspect_high = config.crop_aspect or (width / height, width / height)
    area = rng.uniform(low, high) * width * height
    aspect = math.exp(rng.uniform(math.log(aspect_low), math.log(aspect_high)))
    crop_w = min(float(width), math.sqrt(area * aspect))
    crop_h = min(float(height), math.sqrt(area / aspect))
    left = rng.uniform(0.0, width - crop_w)
    top = rng.uniform(0.0, height - crop_h)
    return left, top, left + crop_w, top + crop_h


def resize_region(
    source: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int], filter_name: str
) -> np.ndarray:
    """The ``box`` region of ``source`` resized to ``size`` (w, h) with the named filter."""
    if filter_name not in FILTERS:
        raise ValueError(f"resample filter must be one of {sorted(FILTERS)}, got {filter_name!r}")
    height, width = source.shape[:2]
    if box == (0.0, 0.0, float(width), float(height)) and (width, height) == size:
        return np.asarray(source, dtype=np.uint8)
    if FILTERS[filter_name] is None:
        return _point_bilinear(np.asarray(source), box, size)
    image = Image.fromarray(np.asarray(source))
    return np.asarray(image.resize(size, resample=FILTERS[filter_name], box=box), dtype=np.uint8)


def sharpen(pixels: np.ndarray, radius: float, percent: float) -> np.ndarray:
    """An unsharp mask of ``radius`` px and ``percent`` strength: the detail of a sharper source."""
    mask = ImageFilter.UnsharpMask(radius=radius, percent=int(round(percent)), threshold=0)
    return np.asarray(Image.fromarray(np.asarray(pixels, dtype=np.uint8)).filter(mask), dtype=np.uint8)


def shades_of_gray(pixels: np.ndarray, power: float = SHADES_OF_GRAY_POWER) -> np.ndarray:
    """The image under a neutral light: each channel divided by its ``power``-mean (the light's colour
    as Shades of Gray estimates it), scaled so that a grey light leaves the image as it was."""
    data = np.asarray(pixels, dtype=np.float64)
    light = np.power(np.mean(np.power(data, power), axis=(0, 1)), 1.0 / power)
    if not np.all(light > 0):
        return np.asarray(pixels, dtype=np.uint8)  # a channel with no light: nothing to correct by
    gain = light.mean() / light
    return np.clip(np.rint(data * gain), 0, 255).astype(np.uint8)


def blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A mild Gaussian blur (an out-of-focus phone photo)."""
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius=sigma)), dtype=np.uint8)


def recompress(pixels: np.ndarray, quality: int) -> np.ndarray:
    """The image after one JPEG round trip at ``quality`` (an upload, a messenger, a gallery app)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def _point_bilinear(
    source: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """Bilinear interpolation at each output pixel's centre, without antialiasing."""
    left, top, right, bottom = box
    out_w, out_h = size
    height, width = source.shape[:2]
    xs = np.clip(left + (np.arange(out_w) + 0.5) * (right - left) / out_w - 0.5, 0, width - 1)
    ys = np.clip(top + (np.arange(out_h) + 0.5) * (bottom - top) / out_h - 0.5, 0, height - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    data = source.astype(np.float32)
    top_row = data[y0][:, x0] * (1 - wx) + data[y0][:, x1] * wx
    bottom_row = data[y1][:, x0] * (1 - wx) + data[y1][:, x1] * wx
    return np.clip(np.rint(top_row * (1 - wy) + bottom_row * wy), 0, 255).astype(np.uint8)
