"""THE preprocessing: every input kind, every image mode, and a table of inputs that must be refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    for source in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data), image, np.asarray(image)):
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

@pytest.mark.parametrize("mode, colour, expected", [
    ("L", 128, (128, 128, 128)),
    ("1", 1, (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ("YCbCr", (76, 85, 255), (254, 0, 0)),
])
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

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 20, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
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
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)),
                  "JPEG")
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    # A valid PNG header claiming 100,000 x 100,000 pixels (10 gigapixels) and almost no data.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


BAD_INPUTS = {
    "missing file": (lambda tmp: tmp / "nope.jpg", "file not found"),
    "a folder": (lambda tmp: tmp, "is a folder"),
    "zero-byte file": (lambda tmp: _write(tmp / "empty.jpg", b""), "empty file"),
    "zero bytes": (lambda tmp: b"", "empty file"),
    "text file": (lambda tmp: _write(tmp / "notes.jpg", b"these are notes, not pixels\n" * 20), "not an image"),
    "html saved as jpg": (lambda tmp: _write(tmp / "page.jpg", b"<html><body>404</body></html>"), "not an image"),
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


@pytest.mark.parametrize("kwargs", [dict(height=0, width=4), dict(height=4, width=4, resize="pad"),
                                    dict(height=4, width=4, std=(1, 0, 1))])
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        InputSpec(**kwargs)


def test_spec_round_trips_through_a_dict():
    spec = InputSpec(height=192, width=160, resize="stretch")
    assert InputSpec.from_dict(spec.to_dict()) == spec
