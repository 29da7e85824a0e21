"""Where backbone weights come from: ``imagenet`` (Keras cache, then download), a file path, or none."""

from __future__ import annotations

from pathlib import Path

KERAS_CACHE = Path.home() / ".keras" / "models"  # tf_keras ignores KERAS_HOME
_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications"
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
_MOBILENET_SIZES = (128, 160, 192, 224)


def imagenet_file_name(backbone: str, *, alpha: float, size: int) -> tuple[str, str]:
    """(file name, download folder) Keras Applications uses for a no-top ImageNet backbone."""
    if backbone == "mobilenet_v2":
        rows = size if size in _MOBILENET_V2_SIZES else 224
        return (
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5",
            "mobilenet_v2",
        )
    if backbone == "mobilenet":
        rows = size if size in _MOBILENET_SIZES else 224
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(float(alpha))
        if alpha_text is None:
            raise ValueError(f"mobilenet ImageNet weights exist for alpha 0.25/0.5/0.75/1.0, got {alpha}")
        return f"mobilenet_{alpha_text}_{rows}_tf_no_top.h5", "mobilenet"
    if backbone == "resnet50":
        return "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"
    raise ValueError(f"no ImageNet weights are published for backbone {backbone!r}")


def resolve_weights(weights: str | Path | None, backbone: str, *, alpha: float, size: int) -> str | None:
    """Returns a weight file path for Keras, or None for random initialization.

    Args:
        weights: ``"imagenet"``, ``"none"``/None, or a path to a Keras Applications ``.h5`` file.
        backbone: Registry name, used to find the ImageNet file.
        alpha: Width multiplier (part of the ImageNet file name).
        size: Input side (part of the ImageNet file name for MobileNets).

    Raises:
        FileNotFoundError: A path that does not exist.
        RuntimeError: ``imagenet`` is not cached and cannot be downloaded (offline).
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights) != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone weights not found: {path}. Pass an existing Keras Applications "
                "weight file, 'imagenet', or 'none'."
            )
        return str(path)
    name, folder = imagenet_file_name(backbone, alpha=alpha, size=size)
    cached = KERAS_CACHE / name
    if cached.is_file():
        return str(cached)
    from models.keras import keras

    try:
        return keras.utils.get_file(name, f"{_ORIGIN}/{folder}/{name}", cache_subdir="models")
    except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
        raise RuntimeError(
            f"ImageNet weights {name} are not in {KERAS_CACHE} and could not be downloaded ({error}). "
            f"Offline, pass the file instead, e.g. weights='../shared/weights/{name}', or copy it into "
            f"{KERAS_CACHE}."
        ) from error
