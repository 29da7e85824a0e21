"""THE preprocessing: every input kind, every image mode, and a table of inputs that must be refused."""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from edge import preprocess
from edge.errors import ImageError
from edge.preprocess import BACKGROUND, InputSpec, crop_box, load_image, normalize

SPEC = InputSpec(height=32, width=32)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(colour=(200, 40, 50), size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


# --- every input kind gives the same pixels -------------------------------------------------------------


def test_path_bytes_file_object_pil_and_array_agree(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    path = tmp_path / "photo.png"
    image.save(path)
    data = path.read_bytes()
    expected = load_image(path, SPEC)
    assert expected.shape == (32, 32, 3) and expected.dtype == np.uint8
    for source in (
        str(path),
        data,
        bytearray(data),
        memoryview(data),
        io.BytesIO(data),
        image,
        np.asarray(image),
    ):
        np.testing.assert_array_equal(load_image(source, SPEC), expected)


def test_output_has_the_requested_size_for_non_square_targets():
    pixels = load_image(solid(size=(640, 480)), InputSpec(height=24, width=40))
    assert pixels.shape == (24, 40, 3)


def test_center_crop_keeps_the_middle_and_stretch_keeps_everything():
    # Left third red, middle green, right third blue, 3:1 wide.
    array = np.zeros((30, 90, 3), np.uint8)
    array[:, :30, 0] = 255
    array[:, 30:60, 1] = 255
    array[:, 60:, 2] = 255
    cropped = load_image(array, InputSpec(height=16, width=16, resize="center_crop"))
    stretched = load_image(array, InputSpec(height=16, width=16, resize="stretch"))
    assert cropped[:, :, 1].min() > 200 and cropped[:, :, 0].max() < 60  # only the green middle
    assert stretched[8, 0, 0] > 200 and stretched[8, -1, 2] > 200  # both ends survive
    assert crop_box((90, 30), (16, 16), "center_crop") == (30.0, 0.0, 60.0, 30.0)


def test_exif_orientation_is_applied():
    tall = Image.new("RGB", (40, 80), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 0, 40, 40))  # white top half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    data = encode(tall, "JPEG", exif=exif.tobytes(), quality=95)
    pixels = load_image(data, InputSpec(height=32, width=32, resize="stretch"))
    # After rotating clockwise, the white half is on the right.
    assert pixels[:, -4:].mean() > 200 and pixels[:, :4].mean() < 50


# --- modes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
    ],
)
def test_colour_modes_become_rgb(mode, colour, expected):
    pixels = load_image(solid(colour, mode=mode), SPEC)
    np.testing.assert_allclose(pixels[16, 16], expected, atol=3)


def test_alpha_is_composited_on_the_documented_background():
    half = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    for image in (half, half.convert("LA")):
        assert tuple(load_image(image, SPEC)[5, 5]) == BACKGROUND
    opaque = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    assert tuple(load_image(opaque, SPEC)[5, 5]) == (0, 0, 255)


def test_palette_with_transparency_uses_the_background():
    image = Image.new("P", (32, 32), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    assert tuple(load_image(encode(image, "PNG"), SPEC)[1, 1]) == BACKGROUND


def test_sixteen_bit_grey_png_is_scaled_not_clipped():
    array = np.full((32, 32), 32768, np.uint16)  # mid-grey in 16 bits
    data = encode(Image.fromarray(array), "PNG")
    pixels = load_image(data, SPEC)
    assert 120 <= pixels[0, 0, 0] <= 135  # clipping would give 255


def test_sixteen_bit_rgb_png_decodes():
    # Pillow cannot write 16-bit RGB, so write the PNG chunks by hand.
    array = np.zeros((20, 20, 3), ">u2")
    array[..., 0] = 65535
    raw = b"".join(b"\x00" + row.tobytes() for row in array)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 20, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    pixels = load_image(png, SPEC)
    np.testing.assert_array_equal(pixels[10, 10], (255, 0, 0))


def test_uint16_and_float_arrays():
    grey16 = np.full((32, 32, 3), 65535, np.uint16)
    assert load_image(grey16, SPEC).min() == 255
    unit = np.full((32, 32, 3), 0.5, np.float32)
    assert load_image(unit, SPEC)[0, 0, 0] == 128


def test_normalize_uses_the_spec():
    pixels = np.array([[[0, 127, 255]]], np.uint8)
    np.testing.assert_allclose(normalize(pixels, SPEC), [[[-1.0, -0.0039, 1.0]]], atol=1e-3)


# --- what must be refused, with the source named --------------------------------------------------------


def _truncated_jpeg() -> bytes:
    data = encode(
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)), "JPEG"
    )
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    # A valid PNG header claiming 100,000 x 100,000 pixels (10 gigapixels) and almost no data.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


BAD_INPUTS = {
    "missing file": (lambda tmp: tmp / "nope.jpg", "file not found"),
    "a folder": (lambda tmp: tmp, "is a folder"),
    "zero-byte file": (lambda tmp: _write(tmp / "empty.jpg", b""), "empty file"),
    "zero bytes": (lambda tmp: b"", "empty file"),
    "text file": (
        lambda tmp: _write(tmp / "notes.jpg", b"these are notes, not pixels\n" * 20),
        "not an image",
    ),
    "html saved as jpg": (
        lambda tmp: _write(tmp / "page.jpg", b"<html><body>404</body></html>"),
        "not an image",
    ),
    "random bytes": (lambda tmp: np.random.default_rng(2).bytes(4096), "not an image"),
    "truncated jpeg": (lambda tmp: _truncated_jpeg(), "truncated or corrupt"),
    "truncated png": (lambda tmp: encode(solid(size=(300, 300)), "PNG")[:200], "truncated or corrupt"),
    "jpeg header only": (lambda tmp: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image"),
    "decompression bomb": (lambda tmp: _bomb_png(), "large"),
    "over the pixel limit": (lambda tmp: solid(size=(3000, 3000)), "over the limit"),
    "1x1 image": (lambda tmp: encode(solid(size=(1, 1))), "too small"),
    "0-d array": (lambda tmp: np.array(3, np.uint8), "expected an H x W"),
    "5-channel array": (lambda tmp: np.zeros((32, 32, 5), np.uint8), "expected an H x W"),
    "empty array": (lambda tmp: np.zeros((0, 0, 3), np.uint8), "expected an H x W"),
    "float array with NaN": (lambda tmp: np.full((32, 32, 3), np.nan, np.float32), "finite"),
    "float array in 0..255": (lambda tmp: np.full((32, 32, 3), 200.0, np.float32), "0..1"),
    "complex array": (lambda tmp: np.zeros((32, 32, 3), np.complex64), "unsupported pixel dtype"),
    "negative integers": (lambda tmp: np.full((32, 32), -5, np.int32), "0..65535"),
    "None": (lambda tmp: None, "unsupported input type"),
    "an integer": (lambda tmp: 42, "unsupported input type"),
    "text-mode file object": (lambda tmp: io.StringIO("abc"), "binary mode"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_one_clear_error(case, tmp_path):
    make, fragment = BAD_INPUTS[case]
    source = make(tmp_path)
    spec = InputSpec(height=32, width=32, max_pixels=4_000_000)
    with pytest.raises(ImageError) as raised:
        load_image(source, spec)
    message = str(raised.value)
    assert fragment in message, message
    if isinstance(source, Path):
        assert str(source) in message  # the user learns which file


def test_the_bad_input_table_is_large_enough():
    assert len(BAD_INPUTS) >= 15


def test_image_error_is_a_value_error_so_callers_can_catch_either():
    with pytest.raises(ValueError):
        load_image(b"", SPEC)


@pytest.mark.parametrize(
    "kwargs",
    [dict(height=0, width=4), dict(height=4, width=4, resize="pad"), dict(height=4, width=4, std=(1, 0, 1))],
)
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        InputSpec(**kwargs)


def test_spec_round_trips_through_a_dict():
    spec = InputSpec(height=192, width=160, resize="stretch")
    assert InputSpec.from_dict(spec.to_dict()) == spec


# --- files Pillow opens in modes we convert through numpy: the error names the file ----------------------


@pytest.mark.parametrize("mode, value, fragment", [("F", 200.0, "0..1"), ("I", 70_000, "0..65535")])
def test_float_and_integer_tiffs_name_the_file(mode, value, fragment, tmp_path):
    path = tmp_path / f"scan-{mode}.tif"
    Image.new(mode, (60, 45), value).save(path)
    with pytest.raises(ImageError) as raised:
        load_image(path, SPEC)
    assert str(raised.value).startswith(f"{path}: ") and fragment in str(raised.value)
    with pytest.raises(ImageError, match=r"^<bytes: \d+ bytes>: "):
        load_image(path.read_bytes(), SPEC)


def test_a_float_tiff_in_range_decodes(tmp_path):
    path = tmp_path / "unit.tif"
    Image.new("F", (40, 40), 0.5).save(path)
    assert load_image(path, SPEC)[0, 0, 0] == 128


# --- a damaged EXIF block: our one line, not Pillow's warnings -------------------------------------------


def _jpeg_with_exif(exif: bytes, size=(64, 48)) -> bytes:
    return encode(solid(size=size), "JPEG", exif=exif, quality=95)


def _truncated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker " * 10  # stored out of line, so cutting the block leaves its offset dangling
    return exif.tobytes()[:40]


def test_corrupt_exif_gives_one_line_of_ours_and_no_pillow_warning(tmp_path, caplog):
    path = _write(tmp_path / "phone.jpg", _jpeg_with_exif(_truncated_exif()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning Pillow lets through fails the test
        with caplog.at_level(logging.WARNING, logger="edge.preprocess"):
            pixels = load_image(path, SPEC)
    assert pixels.shape == (32, 32, 3)
    assert len(caplog.records) == 1, caplog.text
    message = caplog.records[0].getMessage()
    assert message.startswith(f"{path}: damaged EXIF metadata") and "\n" not in message
    assert "PIL" not in message and "site-packages" not in message


def test_intact_exif_logs_nothing(caplog):
    exif = Image.Exif()
    exif[0x0112] = 1
    with caplog.at_level(logging.DEBUG, logger="edge.preprocess"):
        load_image(_jpeg_with_exif(exif.tobytes()), SPEC)
    assert not caplog.records


# --- memory: refused before decoding, concurrent decodes share one budget, huge images reduced ----------


def _png_header(width: int, height: int, colour_type: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def test_an_image_over_the_decode_budget_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(preprocess, "DECODE_BUDGET", preprocess.DecodeBudget(8 * 2**20))
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self) or None)
    # 2000 x 2000 RGB is under the pixel limit but needs ~15 MiB decoded: refused, and nothing decoded.
    with pytest.raises(ImageError, match=r"needs about 15 MiB, over the limit of 8 MiB") as raised:
        load_image(_png_header(2000, 2000), InputSpec(height=32, width=32))
    assert str(raised.value).startswith("<bytes:")
    assert not loads


def test_the_default_budget_admits_the_pixel_limit_for_rgb():
    assert preprocess.decode_bytes("RGB", (8000, 8000), reduced=True) <= preprocess.DECODE_BUDGET.limit_bytes
    assert preprocess.decode_bytes("RGB", (600, 450)) < 2 * 2**20


def test_concurrent_decodes_wait_for_their_share_of_the_budget():
    budget = preprocess.DecodeBudget(100)
    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()

    def hold(event: threading.Event) -> None:
        with budget.reserve(60, "x"):
            event.set()
            release.wait(5)

    first = threading.Thread(target=hold, args=(first_in,))
    first.start()
    assert first_in.wait(5)
    second = threading.Thread(target=hold, args=(second_in,))
    second.start()
    assert not second_in.wait(0.2)  # 60 + 60 > 100: the second decode waits
    release.set()
    assert second_in.wait(5)
    first.join(5)
    second.join(5)
    with budget.reserve(100, "x"):  # everything was given back
        pass


@pytest.mark.parametrize("orientation", [1, 6])
def test_huge_images_are_reduced_after_decoding_and_keep_their_orientation(orientation, monkeypatch):
    monkeypatch.setattr(preprocess, "REDUCE_ABOVE_PIXELS", 10_000)
    reduced = []
    real_reduce = Image.Image.reduce
    monkeypatch.setattr(
        Image.Image,
        "reduce",
        lambda self, factor, **kw: reduced.append(factor) or real_reduce(self, factor, **kw),
    )
    tall = Image.new("RGB", (200, 400), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 0, 200, 200))  # white top half
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = load_image(
        encode(tall, "PNG", exif=exif.tobytes()), InputSpec(height=32, width=32, resize="stretch")
    )
    assert reduced == [6]  # 200 // 32: the reduced image still covers the target
    if orientation == 6:  # turned clockwise: the white half is on the right
        assert pixels[:, -4:].mean() > 200 and pixels[:, :4].mean() < 50
    else:
        assert pixels[:4].mean() > 200 and pixels[-4:].mean() < 50


def test_a_pil_image_passed_in_is_not_modified():
    image = Image.new("RGB", (40, 80), (10, 200, 30))
    exif = image.getexif()
    exif[0x0112] = 6
    before = image.tobytes()
    load_image(image, SPEC)
    assert image.size == (40, 80) and image.tobytes() == before and image.getexif()[0x0112] == 6


# --- ordinary images: exactly the pixels the models were trained on ------------------------------------


def _reference_pixels(data: bytes, spec: InputSpec) -> np.ndarray:
    """The pipeline as it was before big-image handling: draft, exif_transpose, convert, one resize."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (spec.width, spec.height))
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        image = background
    image = image.convert("RGB")
    box = crop_box(image.size, (spec.width, spec.height), spec.resize)
    return np.asarray(image.resize((spec.width, spec.height), resample=Image.Resampling.BILINEAR, box=box))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize(
    "fmt, mode, size",
    [
        ("JPEG", "RGB", (600, 450)),
        ("JPEG", "RGB", (200, 150)),
        ("PNG", "RGB", (224, 224)),
        ("PNG", "RGBA", (600, 450)),
        ("PNG", "L", (600, 450)),
    ],
)
def test_ordinary_images_give_byte_identical_pixels(fmt, mode, size, orientation):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 255, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(array, "RGBA").convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, fmt, exif=exif.tobytes(), **({"quality": 90} if fmt == "JPEG" else {}))
    for spec in (InputSpec(height=224, width=224), InputSpec(height=160, width=192, resize="stretch")):
        assert load_image(data, spec).tobytes() == _reference_pixels(data, spec).tobytes()


@pytest.mark.parametrize("size", [(10000, 50), (60, 4000)])
def test_a_long_strip_is_refused_with_what_to_do(size):
    strip = np.zeros((size[1], size[0], 3), np.uint8)
    with pytest.raises(
        ImageError, match=rf"{size[0]}x{size[1]} px, a strip \d+ times longer than wide.*crop"
    ):
        load_image(strip, InputSpec(height=32, width=32))
    # A panorama is still read.
    assert load_image(np.zeros((100, 450, 3), np.uint8), InputSpec(height=32, width=32)).shape == (32, 32, 3)
