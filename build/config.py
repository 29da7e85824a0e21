"""Build configuration: one frozen dataclass per stage, loaded from TOML, overridable from the CLI.

    >>> config = load_config("build/configs/ham10000.toml", overrides=["train.epochs=3"])
    >>> config.train.epochs
    3

The resolved config is saved as ``config.json`` in the run folder; resuming compares against it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build.stage_configs import LABEL_MAPS, AugmentConfig, BalanceConfig, MixConfig, SplitConfig
from converters.abstain_head import DEFAULT_QUANTILE as ABSTAIN_QUANTILE
from converters.abstain_head import REGULARIZATION_CANDIDATES as ABSTAIN_REGULARIZATION
from edge.preprocess import VIEW_COUNTS
from edge.tasks import TASKS
from edge.variants import ParityGate, names as variant_names
from models.config import ModelConfig


def check_label_maps(sources: tuple[str, ...], maps: tuple[str, ...], key: str) -> None:
    """Raises ValueError unless ``maps`` holds at most one built-in label map name (or "") per source."""
    if len(maps) > len(sources):
        raise ValueError(
            f"{key} has {len(maps)} entries for {len(sources)} source(s); give one per source, in the "
            'same order ("" for none)'
        )
    unknown = sorted({m for m in maps if m and m not in LABEL_MAPS})
    if unknown:
        raise ValueError(f"{key}: unknown label map(s) {unknown}; built-in maps: {sorted(LABEL_MAPS)}")


@dataclass(frozen=True)
class DataConfig:
    """Which images, labels and split.

    Attributes:
        sources: Data set roots or CSVs (see ``build.make.datasets.load_dataset``); relative paths are
            resolved against the current directory.
        label_maps: Per source (same order), a built-in label map name or "" for none.
        classes: Target classes in output order; empty = the sorted labels found.
        task: A key of ``edge.tasks.TASKS`` (``"ham10000"``, ``"msid"``): picks the display names, malignant
            classes, licence, intended use and limitations of the card and the TFLite metadata, and, for a
            task with fixed classes, the output classes.
        split: Fractions and seed of the lesion-grouped split.
        train_only_sources: More sources whose images join the training split alone (after dropping
            copies of ``sources`` images by ``image_id``): validation and test stay those of ``sources``,
            so ``skinlesion evaluate --split val`` on them re-derives the card's split.
        train_only_label_maps: Per training-only source, a built-in label map name or "" for none.
        merge_duplicate_lesions: Treat the lesion ids a HAM10000 root's ``duplicate_lesions.csv`` pairs as
            one lesion before the split. Off only to rebuild on a split made before the merge existed
            (release 2's): the merge changes the grouping, and with it most of the split.
    """

    sources: tuple[str, ...] = ("../shared/data/ham10000",)
    label_maps: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    task: str = "ham10000"
    split: SplitConfig = field(default_factory=SplitConfig)
    train_only_sources: tuple[str, ...] = ()
    train_only_label_maps: tuple[str, ...] = ()
    merge_duplicate_lesions: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"data.task = {self.task!r} is not a known task; choose one of {', '.join(TASKS)} "
                "(edge.tasks.TASKS)"
            )
        check_label_maps(self.sources, self.label_maps, "data.label_maps")
        check_label_maps(self.train_only_sources, self.train_only_label_maps, "data.train_only_label_maps")


@dataclass(frozen=True)
class TrainConfig:
    """Float training, in two phases.

    Attributes:
        batch_size: Images per step (global, across devices).
        steps_per_epoch: Steps per epoch; 0 = one pass over the training split's size.
        head_epochs: Phase 1: epochs training only the head on a frozen backbone.
        head_learning_rate: Phase 1 learning rate.
        epochs: Phase 2: epochs fine-tuning the top ``unfreeze_blocks`` blocks.
        learning_rate: Phase 2 peak learning rate (after warm-up, then cosine decay).
        warmup_epochs: Linear warm-up length of phase 2.
        unfreeze_blocks: Backbone blocks (from the top) trained in phase 2.
        optimizer: ``adam``, ``adamw``, ``rmsprop`` or ``sgd`` (momentum 0.9).
        weight_decay: Decoupled weight decay for ``adamw``.
        label_smoothing: Label smoothing of the cross-entropy targets.
        patience: Stop phase 2 after this many epochs without a better validation balanced accuracy.
        prior_correction: Strength of the logit adjustment folded into the head after training
            (1 = predict as if classes were equally likely; 0 = keep the sampling prior).
        fit_class_bias: Instead, fold into the head a per-class shift fitted on the validation split
            (``build.make.calibration.fit_balanced_shift``): fixes classes predicted too often or too
            rarely, at the price of validation numbers that flatter the model (judge it on test).
        augment: Augmentation of training images.
        mix: Training examples made of two images (CutMix, mixup).
        balance: Class balancing.
        seed: Seed for weights of the head, sampling and augmentation.
        strategy: ``auto``, ``one``, ``mirrored`` or ``multiworker`` (tf.distribute).
        init_from: Weights to start from instead of the backbone's pretrained ones (warm start): a
            ``float/best.weights.npz`` of an earlier run of the same model (saved before prior correction),
            or a released bundle's ``model_float16.tflite`` (its BatchNorm is folded into the convolutions,
            so ``train_batchnorm`` must stay off).
        train_batchnorm: Also train BatchNormalization layers of the unfrozen blocks (their moving
            statistics then adapt to dermatoscopy). Off: pretrained statistics stay as they are.
        ema: Momentum of an exponential moving average of the weights, per step (e.g. 0.999); the
            average is what is judged on validation and kept. 0 = no average.
        deterministic: TensorFlow's deterministic kernels, so the same seed gives the same weights bit
            for bit (``python -m benchmarks.determinism`` measures what it costs).
        teachers: Float weights of models of the same ``[model]`` and classes (``float/best.weights.npz``
            of earlier runs, a ``skinlesion soup`` file, or a bundle's float ``.tflite``) whose mean
            prediction on each augmented batch joins the target (knowledge distillation from an ensemble).
        distillation: Weight of the teachers' mean probabilities in the target; the labels keep the rest.
    """

    batch_size: int = 32
    steps_per_epoch: int = 0
    head_epochs: int = 2
    head_learning_rate: float = 1e-3
    epochs: int = 12
    learning_rate: float = 3e-4
    warmup_epochs: int = 1
    unfreeze_blocks: int = 8
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    patience: int = 5
    prior_correction: float = 1.0
    fit_class_bias: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    seed: int = 0
    strategy: str = "auto"
    init_from: str = ""
    train_batchnorm: bool = False
    ema: float = 0.0
    deterministic: bool = True
    teachers: tuple[str, ...] = ()
    distillation: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "rmsprop", "sgd"):
            raise ValueError(f"optimizer must be adam|adamw|rmsprop|sgd, got {self.optimizer!r}")
        if self.strategy not in ("auto", "one", "mirrored", "multiworker"):
            raise ValueError(f"strategy must be auto|one|mirrored|multiworker, got {self.strategy!r}")
        if self.batch_size < 1 or self.epochs < 0 or self.head_epochs < 0:
            raise ValueError("batch_size must be >= 1 and epochs >= 0")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"train.ema must be a momentum in [0, 1) (0 = off), got {self.ema}")
        if self.epochs + self.head_epochs == 0 and not self.init_from:
            raise ValueError(
                "train.epochs and train.head_epochs are both 0, so nothing would be trained: train at "
                "least one epoch, or set train.init_from to the model to re-export"
            )
        if not 0.0 <= self.distillation <= 1.0:
            raise ValueError(f"train.distillation must be between 0 and 1, got {self.distillation}")
        if bool(self.teachers) != bool(self.distillation):
            raise ValueError(
                "train.teachers and train.distillation go together: the teachers' weight in the target "
                f"(e.g. 0.5) and the files they load (got distillation {self.distillation}, "
                f"{len(self.teachers)} teacher(s))"
            )
        if self.teachers and self.balance.mode == "class_weight":
            raise ValueError(
                'train.teachers cannot be used with train.balance.mode = "class_weight": the distilled '
                'loss weighs no class; balance by "oversample" instead'
            )
        if self.init_from.endswith(".tflite") and self.train_batchnorm:
            raise ValueError(
                f"train.init_from = {self.init_from!r} has its BatchNorm folded into the "
                "convolutions: set train.train_batchnorm = false to continue from it"
            )


@dataclass(frozen=True)
class FixResConfig:
    """The float model's last epochs at the release's input size (FixRes: Touvron et al. 2019).

    Random-resized crops show the network lesions larger than a whole photo at the same input size
    does, so a model trained on them scores best at a larger input (``skinlesion sizes`` measures it).
    With ``image_size`` set, float training runs at ``model.image_size`` (cheaper per step), then
    ``epochs`` more at ``image_size`` from its best weights (stage ``fixres/``, every block as in
    training, no warm-up, cosine from ``learning_rate``) on crops of ``crop_area``; QAT, the export and
    the bundle use ``image_size``.

    Attributes:
        image_size: The release's input size; 0 = off (the model ships at ``model.image_size``).
        epochs: Epochs at ``image_size``; 0 = the float model is the best weights run at it.
        learning_rate: Their peak learning rate (the weights are trained: far below training's).
        crop_area: Random-resized crop areas at ``image_size``, also in QAT: closer to the whole photo
            than training's, so the network sees lesions at the scale the release shows them.
    """

    image_size: int = 0
    epochs: int = 0
    learning_rate: float = 5e-5
    crop_area: tuple[float, float] = (0.65, 1.0)

    def __post_init__(self) -> None:
        if self.image_size < 0 or self.epochs < 0:
            raise ValueError(
                f"fixres.image_size and fixres.epochs must be >= 0 (0 = off), got {self.image_size}, {self.epochs}"
            )
        if self.epochs and not self.image_size:
            raise ValueError(
                f"fixres.epochs = {self.epochs} needs fixres.image_size, the size to train them at"
            )
        try:
            AugmentConfig(crop_area=self.crop_area)  # the augmentation's own check
        except ValueError as error:
            raise ValueError(f"fixres.{str(error).removeprefix('augment.')}") from None


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware fine-tuning of the trained float model.

    Attributes:
        enabled: Run QAT (else the int8 file comes from post-training quantization only).
        epochs: QAT epochs.
        steps_per_epoch: Steps per QAT epoch; 0 = same as float training.
        learning_rate: Constant low learning rate of QAT.
        distillation: Weight of the float model's predictions in the QAT target (the rest is the
            labels): 0 (default) trains on the labels alone, which also keeps improving an
            under-trained float model; 1 asks the int8 model to reproduce the float model, which
            raises agreement with it (what the parity gate checks) but forgoes that gain.
    """

    enabled: bool = True
    epochs: int = 2
    steps_per_epoch: int = 0
    learning_rate: float = 1e-5
    distillation: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.distillation <= 1.0:
            raise ValueError(f"qat.distillation must be between 0 and 1, got {self.distillation}")


@dataclass(frozen=True)
class ExportConfig:
    """TFLite export and the parity gate (defaults: the gates of ``edge.variants.VARIANTS``).

    Attributes:
        variants: Which files ship in the bundle, each gated against the float model: shipped rows of
            ``edge.variants.VARIANTS`` (default: all of them, in the table's order).
        also_validate: Variants exported and measured for the report, but neither gated nor shipped.
        calibration_images: Training images used to calibrate post-training int8.
        validation_images: Validation images used for parity checks (0 = all).
        int8_min_agreement: Gate: top-1 agreement of int8 with the float model.
        int8_max_drop_points: Gate: largest allowed balanced-accuracy drop of int8, in points.
        float_min_agreement: Gate: top-1 agreement of float16 and float32.
        float_max_drop_points: Gate: largest allowed balanced-accuracy drop of float16 and float32, in
            points. One flipped image of a class with n validation images moves balanced accuracy by
            100 / (classes * n) points, so a limit below that fails a file on one near-tie.
        int8_source: Where the shipped int8 file comes from: ``qat``, ``ptq`` (post-training
            quantization of the float model) or ``best`` (whichever agrees more with the float model).
        abstain_negatives: Data sets of images that are not the training data's kind (e.g. clinical
            photos for a dermoscopy model); the in-graph abstain head learns to refuse their fit half
            (``build.make.negatives``) and synthetic images. Empty: synthetic images only.
        abstain_regularization: Inverse L2 strengths of the head's logistic regression (larger fits the
            negatives more closely): one fixes it; of several, each model's head takes the one that
            refuses most held-out negatives in grouped cross-validation (``converters.abstain_head``).
        abstain_quantile: Share of validation images the head's limit answers, averaged over classes
            (the file's int8 rounding moves images that sit near the limit either way).
        abstain_min_answered: Gate: share of validation images each file's abstain head answers.
        abstain_min_refused: Gate: share of the negative sources' other half (images the head never
            learned from) each file's head refuses.
        abstain_min_synthetic_refused: Gate: share of synthetic noise, flat and colour images (another
            draw than the head's) each file's head refuses.
        test_time_views: Mirror images of each photo every file scores and averages inside its graph
            (``converters.views``): 1 (the photo alone), 2, 4 or 8 (square inputs). Each view is another
            pass through the network (8 views: 7.7x the invoke time of one, measured); no more weights.
        external_data: Data sets the bundle is also evaluated on, each without the images the run's
            sources hold (by ``image_id``): an external test beside the split (e.g. the ISIC archive's
            images HAM10000 lacks). Each gets a report and an entry in the card's metrics; none gates.
        external_label_maps: Per external data set, a built-in label map name or "" for none.
    """

    variants: tuple[str, ...] = field(default_factory=variant_names)
    also_validate: tuple[str, ...] = ()
    calibration_images: int = 300
    validation_images: int = 0
    int8_min_agreement: float = ParityGate.for_variant("int8").min_top1_agreement
    int8_max_drop_points: float = ParityGate.for_variant("int8").max_balanced_accuracy_drop
    float_min_agreement: float = ParityGate.for_variant("float16").min_top1_agreement
    float_max_drop_points: float = ParityGate.for_variant("float16").max_balanced_accuracy_drop
    int8_source: str = "best"
    abstain_negatives: tuple[str, ...] = ()
    abstain_regularization: tuple[float, ...] = ABSTAIN_REGULARIZATION
    abstain_quantile: float = ABSTAIN_QUANTILE
    abstain_min_answered: float = 0.95
    abstain_min_refused: float = 0.91
    abstain_min_synthetic_refused: float = 1.0
    test_time_views: int = 1
    external_data: tuple[str, ...] = ()
    external_label_maps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_label_maps(self.external_data, self.external_label_maps, "export.external_label_maps")
        if self.test_time_views not in VIEW_COUNTS:
            raise ValueError(
                f"export.test_time_views must be one of {', '.join(map(str, VIEW_COUNTS))}, "
                f"got {self.test_time_views!r}"
            )
        for key in ("abstain_min_answered", "abstain_min_refused", "abstain_min_synthetic_refused"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"export.{key} must be a share in [0, 1], got {getattr(self, key)}")
        if not 0.5 <= self.abstain_quantile < 1:
            raise ValueError(
                f"export.abstain_quantile must be a share in [0.5, 1), got {self.abstain_quantile}"
            )
        if isinstance(self.abstain_regularization, (int, float)):  # one strength, given as a number
            object.__setattr__(self, "abstain_regularization", (float(self.abstain_regularization),))
        if not self.abstain_regularization or not min(self.abstain_regularization) > 0:
            raise ValueError(
                "export.abstain_regularization must be one or more inverse L2 strengths > 0, got "
                f"{list(self.abstain_regularization)}"
            )
        if self.int8_source not in ("qat", "ptq", "best"):
            raise ValueError(f"export.int8_source must be qat|ptq|best, got {self.int8_source!r}")
        for key in ("variants", "also_validate"):
            unknown = [v for v in getattr(self, key) if v not in variant_names()]
            if unknown:
                raise ValueError(
                    f"export.{key}: unknown variant(s) {unknown}; known: {', '.join(variant_names())}"
                )


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``skinlesion build`` does, stage by stage."""

    name: str = "skinlesion-ham10000"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fixres: FixResConfig = field(default_factory=FixResConfig)
    qat: QatConfig = field(default_factory=QatConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    resize: str = "stretch"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> BuildConfig:
    """Reads a TOML file (or starts from defaults) and applies ``section.key=value`` overrides.

    A file may start with ``extends = "other.toml"`` (relative to itself): it then holds only what
    differs from that file.

    Raises:
        FileNotFoundError: The TOML file (or one it extends) is missing.
        ValueError: An unknown section or key, or a value of the wrong type.
    """
    data = _read_toml(Path(path)) if path is not None else {}
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} must look like section.key=value")
        _set_path(data, key.strip().split("."), _parse_value(raw.strip()))
    return from_dict(BuildConfig, data, where=str(path or "defaults"))


def from_dict(cls, data: dict[str, Any], *, where: str):
    """Builds a (nested) frozen dataclass from plain data, refusing unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if _has_defaults(cls) else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, where=f"{where}:{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif isinstance(default, float) and isinstance(value, int):
            kwargs[name] = float(value)
        else:
            if default is not None and not isinstance(value, type(default)):
                raise ValueError(f"{where}: {name} must be {type(default).__name__}, got {value!r}")
            kwargs[name] = value
    return cls(**kwargs)


def _has_defaults(cls) -> bool:
    try:
        cls()
        return True
    except TypeError:
        return False


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' loops back to itself")
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_toml(path.parent / parent, (*seen, path.resolve())), data)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = (
            _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare string such as optimizer=sgd
