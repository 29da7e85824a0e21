"""The backbone registry and weight resolution: flat graphs QAT can wrap, clear errors, offline weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="backbones need TensorFlow (the [build] extra)")

from models import weights as weights_module  # noqa: E402
from models.backbones import BACKBONES, build_mobilenet_v2  # noqa: E402
from models.keras import keras  # noqa: E402
from models.weights import imagenet_file_name, resolve_weights  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WEIGHTS_035 = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"

# Smallest input each backbone accepts, its width multiplier here, and the feature map it then gives.
SMALL_BUILDS = {
    "mobilenet_v2": ((96, 96, 3), 0.35, (3, 3, 1280)),
    "mobilenet": ((32, 32, 3), 0.25, (1, 1, 256)),
    "resnet50": ((32, 32, 3), 1.0, (1, 1, 2048)),
    "small_cnn": ((32, 32, 3), 0.5, (4, 4, 64)),
}


def test_every_registered_backbone_is_covered_here():
    assert set(SMALL_BUILDS) == set(BACKBONES)


@pytest.mark.parametrize("name", sorted(SMALL_BUILDS))
def test_backbone_is_a_flat_functional_graph_with_the_right_output(name):
    shape, alpha, features = SMALL_BUILDS[name]
    model = BACKBONES[name](shape, "none", alpha=alpha)

    assert isinstance(model, keras.Model) and model.__class__.__name__ == "Functional"
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    banned = [layer.name for layer in model.layers if type(layer).__name__ in ("Lambda", "Rescaling")]
    assert nested == [] and banned == []
    assert tuple(model.input_shape) == (None, *shape)
    assert tuple(model.output_shape) == (None, *features)
    out = model(np.zeros((1, *shape), np.float32), training=False).numpy()
    assert out.shape == (1, *features) and np.isfinite(out).all()


@pytest.mark.parametrize("alpha", [0.3, 1.5])
def test_mobilenet_v2_rejects_alpha_outside_its_range(alpha):
    with pytest.raises(ValueError, match=rf"alpha must be within 0.35..1.4, got {alpha}"):
        build_mobilenet_v2((96, 96, 3), "none", alpha=alpha)


def test_mobilenet_v2_names_its_minimum_input_size():
    with pytest.raises(ValueError, match=r"at least 96x96, got \(95, 95\)"):
        build_mobilenet_v2((95, 95, 3), "none", alpha=0.35)


def test_backbones_refuse_non_rgb_inputs():
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        BACKBONES["mobilenet"]((64, 64, 1), "none", alpha=0.25)


def test_resnet50_refuses_a_width_multiplier():
    with pytest.raises(ValueError, match="alpha must be 1.0, got 0.5"):
        BACKBONES["resnet50"]((32, 32, 3), "none", alpha=0.5)


def test_small_cnn_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="small_cnn has no pretrained weights"):
        BACKBONES["small_cnn"]((32, 32, 3), "imagenet", alpha=1.0)


def test_none_means_random_initialization():
    assert resolve_weights(None, "mobilenet_v2", alpha=1.0, size=160) is None
    assert resolve_weights("None", "mobilenet_v2", alpha=1.0, size=160) is None


def test_a_missing_weight_file_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "mobilenet.h5"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        resolve_weights(str(missing), "mobilenet_v2", alpha=1.0, size=160)
    # The same error reaches whoever builds a backbone from a config.
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_mobilenet_v2((96, 96, 3), str(missing), alpha=0.35)


def test_an_existing_weight_file_is_passed_through(tmp_path):
    weight_file = tmp_path / "backbone.h5"
    weight_file.write_bytes(b"\0")
    assert resolve_weights(weight_file, "mobilenet_v2", alpha=1.0, size=160) == str(weight_file)


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    """An empty Keras cache, and a download that fails the way it does without internet."""
    cache = tmp_path / "keras-models"
    cache.mkdir()
    monkeypatch.setattr(weights_module, "KERAS_CACHE", cache)
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append(origin)
        raise OSError(f"URL fetch failure on {origin}: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return cache, calls


def test_imagenet_offline_with_an_empty_cache_says_how_to_pass_a_file(offline_empty_cache):
    cache, calls = offline_empty_cache
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with pytest.raises(RuntimeError) as error:
        resolve_weights("imagenet", "mobilenet_v2", alpha=0.35, size=96)
    message = str(error.value)
    assert name in message and str(cache) in message
    assert f"weights='../shared/weights/{name}'" in message
    assert len(calls) == 1 and calls[0].endswith(f"/mobilenet_v2/{name}")


def test_imagenet_uses_the_keras_cache_without_downloading(offline_empty_cache):
    cache, calls = offline_empty_cache
    cached = cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    cached.write_bytes(b"\0")
    assert resolve_weights("imagenet", "mobilenet_v2", alpha=1.0, size=160) == str(cached)
    assert calls == []


def test_imagenet_file_names_follow_keras_applications():
    assert imagenet_file_name("mobilenet_v2", alpha=0.35, size=200) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
        "mobilenet_v2",
    )
    assert imagenet_file_name("mobilenet", alpha=0.5, size=128) == (
        "mobilenet_5_0_128_tf_no_top.h5",
        "mobilenet",
    )
    with pytest.raises(ValueError, match="alpha 0.25/0.5/0.75/1.0, got 0.35"):
        imagenet_file_name("mobilenet", alpha=0.35, size=128)
    with pytest.raises(ValueError, match="small_cnn"):
        imagenet_file_name("small_cnn", alpha=1.0, size=32)


@pytest.mark.shared_data
def test_shared_imagenet_035_weights_load_into_mobilenet_v2():
    if not WEIGHTS_035.is_file():
        pytest.skip(f"{WEIGHTS_035} is absent (a fresh clone has no ../shared)")

    def first_kernel(weights: str, seed: int) -> np.ndarray:
        keras.utils.set_random_seed(seed)
        model = build_mobilenet_v2((96, 96, 3), weights, alpha=0.35)
        return model.get_layer("Conv1").kernel.numpy()

    loaded = first_kernel(str(WEIGHTS_035), seed=1)
    # Loaded weights do not depend on the random seed; random ones do, and differ from ImageNet's.
    np.testing.assert_array_equal(loaded, first_kernel(str(WEIGHTS_035), seed=2))
    assert not np.allclose(loaded, first_kernel("none", seed=1))


@pytest.mark.parametrize("name", sorted(SMALL_BUILDS))
def test_each_entry_declares_the_input_it_was_built_for(name):
    entry = BACKBONES[name]
    shape = SMALL_BUILDS[name][0]
    # Keras Applications' preprocessing mode for each family's ImageNet weights: "tf" (-1..1) or "caffe".
    expected = (
        ((123.68, 116.779, 103.939), (1.0,) * 3) if name == "resnet50" else ((127.5,) * 3, (127.5,) * 3)
    )
    assert entry.min_size <= shape[0] and (entry.mean, entry.std) == expected
    too_small = (entry.min_size - 1, entry.min_size - 1, 3)
    with pytest.raises(
        ValueError, match=rf"{name} needs inputs of at least {entry.min_size}x{entry.min_size}"
    ):
        entry(too_small, "none", alpha=SMALL_BUILDS[name][1])


def test_resnet50_reads_rgb_pixels_normalized_as_its_card_says_like_keras_reads_caffe_bgr(tmp_path):
    # Keras' ResNet50 ImageNet weights expect BGR pixels minus the ImageNet means ("caffe" mode). Ours
    # takes RGB through the card's per-channel mean and std: both must give the same features.
    reference = keras.applications.ResNet50(input_shape=(32, 32, 3), include_top=False, weights=None)
    weight_file = tmp_path / "resnet50_no_top.h5"
    reference.save_weights(str(weight_file))
    ours = BACKBONES["resnet50"]((32, 32, 3), str(weight_file))

    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3)).astype(np.float32)
    entry = BACKBONES["resnet50"]
    ours_in = (rgb - np.array(entry.mean, np.float32)) / np.array(entry.std, np.float32)
    caffe_in = keras.applications.resnet50.preprocess_input(rgb.copy())
    np.testing.assert_allclose(ours(ours_in).numpy(), reference(caffe_in).numpy(), rtol=1e-4, atol=1e-3)
