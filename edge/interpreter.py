"""Finding a TFLite interpreter and running one model file with it.

The runtime is the first of :data:`RUNTIMES` that imports: ``ai_edge_litert`` (LiteRT, the small wheel
for x86-64 and aarch64), then ``tflite_runtime`` (older Raspberry Pi images), then ``tensorflow.lite``
(a full TensorFlow install). TensorFlow is only imported when neither small runtime is installed.

    >>> model = TFLiteModel("model_int8.tflite", num_threads=4)
    >>> model.runtime.name
    'ai_edge_litert'
    >>> raw = model.run(np.zeros(model.input.shape, model.input.dtype))

A model may have a second output, the abstain head (``converters.abstain_head``); the exporter orders
the outputs so that the class scores are always output 0.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import SkinlesionError

# (reported name, module that provides Interpreter and load_delegate), in order of preference.
RUNTIMES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow.lite", "tensorflow"),
)

# Named delegates -> shared library per operating system, and what to install when it is missing.
DELEGATE_LIBRARIES = {
    "edgetpu": {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"},
    "gpu": {
        "Linux": "libtensorflowlite_gpu_delegate.so",
        "Darwin": "libtensorflowlite_gpu_delegate.dylib",
        "Windows": "tensorflowlite_gpu_delegate.dll",
    },
}
DELEGATE_HINTS = {
    "edgetpu": "install the Edge TPU runtime (libedgetpu1-std from https://coral.ai/software) and use a "
    "model compiled with edgetpu_compiler",
    "gpu": "build or install the TFLite GPU delegate library for this platform and put it on the library "
    "path",
}


@dataclass(frozen=True)
class Runtime:
    """An importable TFLite runtime.

    Attributes:
        name: Reported name: ``"ai_edge_litert"``, ``"tflite_runtime"`` or ``"tensorflow.lite"``.
        interpreter_class: Its ``Interpreter`` class.
        load_delegate: Its ``load_delegate(library, options=None)`` function.
    """

    name: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any]


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and quantization of a model input or output.

    Attributes:
        shape: Tensor shape including the batch dimension, e.g. ``(1, 224, 224, 3)``.
        dtype: numpy dtype of the tensor (float32, uint8, int8, ...).
        scale: Quantization scale; 0.0 for a float tensor.
        zero_point: Quantization zero point; 0 for a float tensor.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype.kind in "iu" and self.scale > 0


def find_runtime(names: tuple[str, ...] | None = None) -> Runtime:
    """Returns the first importable runtime among ``names`` (default: all of :data:`RUNTIMES`, in order).

    Raises:
        SkinlesionError: None of them is installed.
    """
    wanted = names or tuple(name for name, _ in RUNTIMES)
    unknown = set(wanted) - {name for name, _ in RUNTIMES}
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; choose from {[n for n, _ in RUNTIMES]}")
    failures = []
    for name, module_name in RUNTIMES:
        if name not in wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            failures.append(f"{name}: {error}")
            continue
        if name == "tensorflow.lite":
            return Runtime(name, module.lite.Interpreter, module.lite.experimental.load_delegate)
        return Runtime(name, module.Interpreter, module.load_delegate)
    raise SkinlesionError(
        "no TFLite interpreter is installed (" + "; ".join(failures) + "). Install one: "
        "pip install ai-edge-litert (x86-64, aarch64), or pip install tflite-runtime where "
        "no LiteRT wheel exists"
    )


def delegate_library(delegate: str) -> str:
    """Maps ``"edgetpu"``/``"gpu"`` to this platform's library name; any other value is taken as a path."""
    libraries = DELEGATE_LIBRARIES.get(delegate)
    if libraries is None:
        return delegate
    system = platform.system()
    if system not in libraries:
        raise SkinlesionError(
            f"the {delegate} delegate has no known library on {system}; pass the path to "
            "the delegate library instead"
        )
    return libraries[system]


def load_delegate(runtime: Runtime, delegate: str) -> Any:
    """Loads a delegate by name (``"edgetpu"``, ``"gpu"``) or library path.

    Raises:
        SkinlesionError: The library is missing or refuses to load; the message says what to install.
    """
    library = delegate_library(delegate)
    if delegate not in DELEGATE_LIBRARIES and os.sep in library and not Path(library).exists():
        raise SkinlesionError(
            f"delegate library {library} does not exist; pass the path of an existing "
            "delegate library, or 'edgetpu' / 'gpu'"
        )
    hint = DELEGATE_HINTS.get(delegate, "check that the library matches this runtime and platform")
    try:
        # Probe first: the runtimes' Delegate objects print a spurious traceback when they fail to load.
        probe = ctypes.CDLL(library)
        if not hasattr(probe, "tflite_plugin_create_delegate"):
            raise ValueError("it has no tflite_plugin_create_delegate, so it is not a TFLite delegate")
        return runtime.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as error:
        what = f"the {delegate} delegate ({library})" if delegate in DELEGATE_LIBRARIES else library
        raise SkinlesionError(
            f"cannot load {what} with {runtime.name}: {error}. To fix: {hint}; or run without a delegate"
        ) from error


def open_interpreter(
    model: str | os.PathLike | bytes,
    *,
    runtime: Runtime | None = None,
    num_threads: int | None = None,
    delegates: list[Any] | None = None,
) -> Any:
    """The runtime's own ``Interpreter`` for a ``.tflite`` path or a model's bytes, tensors not allocated.

    For tools that need more than :class:`TFLiteModel` offers (a batched input, the tensor or operator
    list); every TFLite file the project reads is opened here, so all of them run on the same runtime.

        >>> interpreter = open_interpreter("model_int8.tflite")
        >>> interpreter.resize_tensor_input(0, [32, 224, 224, 3]); interpreter.allocate_tensors()

    Args:
        model: The file, or its bytes.
        runtime: A runtime from :func:`find_runtime` (None: the first one installed).
        num_threads: CPU threads (None: the runtime's default).
        delegates: Delegates from :func:`load_delegate` (None: CPU only).

    Raises:
        SkinlesionError: No runtime is installed. The runtime's own ValueError or RuntimeError when it
            cannot read the model.
    """
    runtime = runtime or find_runtime()
    if isinstance(model, (bytes, bytearray)):
        source = {"model_content": bytes(model)}
    else:
        source = {"model_path": str(model)}
    return runtime.interpreter_class(**source, num_threads=num_threads, experimental_delegates=delegates)


class TFLiteModel:
    """One ``.tflite`` file opened in an interpreter, with a lock so several threads may call :meth:`run`.

    Args:
        path: The ``.tflite`` file.
        num_threads: CPU threads for the interpreter (None: the runtime's default).
        delegate: ``"edgetpu"``, ``"gpu"`` or the path of a delegate library (None: CPU only).
        runtime: A runtime from :func:`find_runtime` (None: the first one installed).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        delegate: str | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SkinlesionError(f"model file {self.path} not found")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.runtime = runtime or find_runtime()
        delegates = [load_delegate(self.runtime, delegate)] if delegate else None
        try:
            self._interpreter = open_interpreter(
                self.path, runtime=self.runtime, num_threads=num_threads, delegates=delegates
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise SkinlesionError(
                f"{self.path}: {self.runtime.name} cannot open this model ({error}); is it "
                "a valid .tflite file for this runtime version?"
            ) from error
        except (SystemError, ImportError) as error:
            # tflite-runtime wheels (<= 2.14) are built against NumPy 1.x and fail here under NumPy 2.
            raise SkinlesionError(
                f"{self.runtime.name} failed to start ({error}); with tflite-runtime "
                "install NumPy 1.x: pip install 'numpy<2'"
            ) from error
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) not in (1, 2):
            raise SkinlesionError(
                f"{self.path}: expected one input and one or two output tensors (class "
                f"scores, abstain head), got {len(inputs)} and {len(outputs)}"
            )
        self._input_index = inputs[0]["index"]
        self._output_indices = tuple(details["index"] for details in outputs)
        self._output_index = self._output_indices[0]
        self.input = tensor_info(inputs[0])
        self.outputs = tuple(tensor_info(details) for details in outputs)
        self.output = self.outputs[0]
        self._lock = threading.Lock()

    def set_input(self, tensor: np.ndarray) -> None:
        """Copies ``tensor`` into the input (not thread-safe; :meth:`run` is)."""
        self._interpreter.set_tensor(self._input_index, tensor)

    def invoke(self) -> None:
        """Runs the model on the current input (not thread-safe; :meth:`run` is)."""
        self._interpreter.invoke()

    def get_output(self) -> np.ndarray:
        """A copy of the raw output tensor (not thread-safe; :meth:`run` is)."""
        return self._interpreter.get_tensor(self._output_index).copy()

    def get_outputs(self) -> tuple[np.ndarray, ...]:
        """Copies of every raw output tensor, class scores first (not thread-safe; :meth:`run_all` is)."""
        return tuple(self._interpreter.get_tensor(index).copy() for index in self._output_indices)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Sets the input, invokes and returns a copy of the raw output, holding the model's lock."""
        with self._lock:
            self.set_input(tensor)
            self.invoke()
            return self.get_output()

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, ...]:
        """Like :meth:`run`, returning every output: the class scores, then the abstain head if any."""
        with self._lock:
            self.set_input(tensor)
            self.invoke()
            return self.get_outputs()


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Real values -> the integer tensor ``info`` describes (round to nearest, saturate)."""
    limits = np.iinfo(info.dtype)
    quantized = np.round(values / info.scale) + info.zero_point
    return np.clip(quantized, limits.min, limits.max).astype(info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """An integer tensor -> float64 real values; float tensors pass through as float64."""
    if not info.quantized:
        return values.astype(np.float64)
    return (values.astype(np.float64) - info.zero_point) * info.scale


def tensor_info(details: dict[str, Any]) -> TensorInfo:
    """The :class:`TensorInfo` of one entry of an interpreter's ``get_input_details()`` or
    ``get_output_details()``."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorInfo(
        shape=tuple(int(d) for d in details["shape"]),
        dtype=np.dtype(details["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )
