"""The TFLite variants: one row each, in the order a runtime prefers them (Ultralytics' ``export_formats``).

The card's file list, the bundle reader's default, the exporter's plan, the parity gate's defaults, the
validator's file-name parsing and the CLIs' ``--variant`` help all read :data:`VARIANTS`; the
quantization factory of each row lives with the converter (``converters.quantization.FACTORIES``).
Adding a variant is a row here plus its factory there.

    >>> [v.name for v in shipped()]
    ['int8', 'float16', 'dynamic', 'float32']
    >>> variant("int8-qat").file, variant("int8-qat").quantization
    ('qat/model_int8.tflite', 'int8')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParityGate:
    """Thresholds a TFLite file must meet before it is published (see ``converters.validate.check_gate``).

    Attributes:
        min_top1_agreement: Smallest acceptable top-1 agreement with the float model (0..1).
        max_balanced_accuracy_drop: Largest acceptable drop of balanced accuracy, in percentage points.
        max_mean_kl: Largest acceptable mean KL divergence, in nats; None for no limit.
    """

    min_top1_agreement: float
    max_balanced_accuracy_drop: float
    max_mean_kl: float | None = None

    @classmethod
    def for_variant(cls, name: str) -> "ParityGate":
        """The default gate of a variant: float files must be near-identical, int8 close.

        Raises:
            ValueError: ``name`` is no row of :data:`VARIANTS` (the message lists the known ones).
        """
        if name not in names(shipped_only=False):
            known = ", ".join(names(shipped_only=False))
            raise ValueError(f"no default gate for variant {name!r}; known: {known}")
        return variant(name).gate


@dataclass(frozen=True)
class Variant:
    """One kind of TFLite file a build writes.

    Attributes:
        name: Key of the card's ``files``, the ``--variant`` value and the parity report's name.
        file: Where the file lies in an export folder (and, for a shipped variant, in a bundle).
        description: One line for help texts and reports.
        gate: The default parity gate against the float model.
        quantization: The row whose quantization factory writes the file: the variant itself, or
            ``"int8"`` for the int8 candidates.
        source: The model the file is converted from: ``"float"`` or ``"qat"``.
        shipped: Whether a bundle carries it. The build writes the candidates (``int8-qat``,
            ``int8-ptq``) to compare them, then ships one of them as ``int8``.
    """

    name: str
    file: str
    description: str
    gate: ParityGate
    quantization: str = ""
    source: str = "float"
    shipped: bool = True

    def __post_init__(self) -> None:
        if not self.quantization:
            object.__setattr__(self, "quantization", self.name)


_INT8_GATE = ParityGate(min_top1_agreement=0.985, max_balanced_accuracy_drop=1.0)

VARIANTS: tuple[Variant, ...] = (
    Variant(
        "int8",
        "model_int8.tflite",
        "full integer, uint8 in and out: smallest and fastest on CPUs and NPUs",
        _INT8_GATE,
    ),
    Variant(
        "float16",
        "model_float16.tflite",
        "float16 weights, float32 compute: half the size, GPU-friendly",
        ParityGate(min_top1_agreement=0.999, max_balanced_accuracy_drop=0.1, max_mean_kl=1e-3),
    ),
    # int8 weights with float activations: a gate between float16 and full-integer.
    Variant(
        "dynamic",
        "model_dynamic.tflite",
        "int8 weights, activations quantized on the fly, float32 I/O",
        ParityGate(min_top1_agreement=0.995, max_balanced_accuracy_drop=0.5),
    ),
    Variant(
        "float32",
        "model_float32.tflite",
        "no quantization: the float reference as a TFLite file",
        ParityGate(min_top1_agreement=0.999, max_balanced_accuracy_drop=0.1, max_mean_kl=1e-4),
    ),
    Variant(
        "int8-qat",
        "qat/model_int8.tflite",
        "int8 candidate converted from the quantization-aware model",
        _INT8_GATE,
        quantization="int8",
        source="qat",
        shipped=False,
    ),
    Variant(
        "int8-ptq",
        "ptq/model_int8.tflite",
        "int8 candidate: post-training quantization of the float model",
        _INT8_GATE,
        quantization="int8",
        shipped=False,
    ),
)


def variant(name: str) -> Variant:
    """The row named ``name``.

    Raises:
        ValueError: No row has that name (the message lists the known ones).
    """
    for row in VARIANTS:
        if row.name == name:
            return row
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(names(shipped_only=False))}")


def shipped() -> tuple[Variant, ...]:
    """The rows a bundle may carry, in preference order."""
    return tuple(row for row in VARIANTS if row.shipped)


def names(*, shipped_only: bool = True) -> tuple[str, ...]:
    """Variant names in table order: those a bundle may carry, or with ``shipped_only=False`` every row."""
    return tuple(row.name for row in VARIANTS if row.shipped or not shipped_only)


def candidates(name: str) -> tuple[Variant, ...]:
    """The unshipped rows the build compares before one of them ships as ``name`` (e.g. int8's QAT and PTQ)."""
    return tuple(row for row in VARIANTS if not row.shipped and row.quantization == name)


def from_file_name(file_name: str) -> str | None:
    """The shipped variant a ``model_<variant>.tflite`` name stands for, or None."""
    for row in shipped():
        if row.file == file_name:
            return row.name
    return None
