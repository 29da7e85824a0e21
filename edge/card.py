"""The model card: the JSON that travels with every bundle and says how to run and trust its models.

The card is the single source of the class order, the input spec (size, resize policy, normalization),
which classes count as malignant, the calibration temperature and the abstain rule. Writers
(``converters.bundle``) build a :class:`ModelCard`; readers (``edge.bundle``) get one back.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edge.preprocess import InputSpec

SCHEMA_VERSION = 1
CARD_FILE = "model_card.json"
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class ClassInfo:
    """One output class.

    Attributes:
        code: Short label as it appears in labels.txt and the data (e.g. ``"mel"``).
        display_name: What a patient reads (e.g. ``"Melanoma"``).
        malignant: Whether this class counts towards the malignant probability.
        description: One plain-language sentence about the finding.
    """

    code: str
    display_name: str
    malignant: bool = False
    description: str = ""


@dataclass(frozen=True)
class ModelFile:
    """A model file inside the bundle. ``path`` is relative to the bundle folder."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ModelCard:
    """Everything a runtime or a reviewer needs to know about a bundle.

    Attributes:
        name: Bundle name, e.g. ``"skinlesion-ham10000"``.
        version: Release version of this bundle.
        created: ISO-8601 UTC timestamp of the export.
        task: What the model does, e.g. ``"dermoscopy 7-class"``.
        classes: Output classes, in output order.
        input: Input size, resize policy and normalization.
        files: Variant name (a row of ``edge.variants.VARIANTS``, or ``reference``) -> file entry.
        temperature: Calibration temperature applied to logits (1.0 = uncalibrated).
        test_time_views: Mirror images of each photo every file scores and averages inside its graph
            (``converters.views``; 1: the photo alone). A file costs about this many times the
            arithmetic of one view; the Keras reference averages the same views.
        malignant_threshold: Operating point: a malignant probability at or above it is reported as
            "see a dermatologist soon" and counts as a positive call in the metrics.
        operating_points: Named malignant-probability thresholds fitted by the build, each
            ``{"threshold": float, "sensitivity": float, "specificity": float, "fitted_on": split}``:
            ``"screening"`` is the threshold chosen on validation for at least 0.90 malignant sensitivity
            (the demo's "moderate" risk band starts there), ``"high"`` the ``malignant_threshold``-style
            point (its "high" band starts there). Empty in cards written before the build fitted them;
            readers then fall back to their defaults and to ``malignant_threshold``.
        abstain: The abstain rule (see ``edge.abstain``), or empty for none.
        validation: Variant -> parity report against the float reference.
        metrics: Split or data set name -> metrics dict.
        training: Config, data fingerprint, split, seconds, code version.
        license: License of the weights (inherited from the training data).
        intended_use: Who may use the model for what.
        limitations: Known failure modes, in plain words.
    """

    name: str
    version: str
    created: str
    task: str
    classes: tuple[ClassInfo, ...]
    input: InputSpec
    files: dict[str, ModelFile] = field(default_factory=dict)
    temperature: float = 1.0
    test_time_views: int = 1
    malignant_threshold: float = 0.5
    operating_points: dict[str, Any] = field(default_factory=dict)
    abstain: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    intended_use: str = ""
    limitations: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @property
    def labels(self) -> list[str]:
        return [c.code for c in self.classes]

    @property
    def display_names(self) -> dict[str, str]:
        return {c.code: c.display_name for c in self.classes}

    @property
    def malignant_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c.malignant]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input"] = self.input.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"model card schema_version {version} is newer than this runtime understands "
                f"({SCHEMA_VERSION}); upgrade skinlesion"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["classes"] = tuple(ClassInfo(**c) for c in data["classes"])
        kwargs["input"] = InputSpec.from_dict(data["input"])
        kwargs["files"] = {k: ModelFile(**v) for k, v in data.get("files", {}).items()}
        kwargs["limitations"] = tuple(data.get("limitations", ()))
        return cls(**kwargs)
