"""TFLite metadata: labels and input normalization inside the .tflite file, for MediaPipe Tasks and LiteRT.

With this metadata MediaPipe's ``ImageClassifier`` returns our class codes (and display names) and
normalizes float inputs by itself, with no code on the phone. The format is the TFLite Metadata
flatbuffer stored in the model's ``TFLITE_METADATA`` buffer, with the label files appended to the model
as a zip archive, exactly as the official metadata writer lays it out.

mediapipe 1.2.2's own writer imports a native module missing from its wheel, so this module builds the
flatbuffer with the generated schema classes that the wheel does ship
(``mediapipe.tasks.metadata.metadata_schema_py_generated``) and the ``flatbuffers`` package.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

from edge.labels import (
    METADATA_ABSTAIN_LABELS_FILE,
    METADATA_DISPLAY_NAMES_FILE,
    METADATA_LABELS_FILE,
    parse_labels,
)
from edge.preprocess import InputSpec
from edge.tasks import UNSTATED_LICENSE

METADATA_NAME = "TFLITE_METADATA"
MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
# The edge runtime reads these back without TensorFlow (edge.labels.read_metadata_display_names).
LABELS_FILE = METADATA_LABELS_FILE
DISPLAY_NAMES_FILE = METADATA_DISPLAY_NAMES_FILE
ABSTAIN_LABELS_FILE = METADATA_ABSTAIN_LABELS_FILE
ABSTAIN_HEAD_NAME = "in_distribution"  # MediaPipe's head_name of classifications[1]
DISPLAY_NAMES_LOCALE = "en"  # MediaPipe's default display_names_locale
# Every field written here exists since metadata schema 1.0.0; readers refuse files that claim newer.
MIN_PARSER_VERSION = "1.0.0"


@dataclass(frozen=True)
class TFLiteMetadata:
    """What :func:`read_metadata` finds in a model file.

    Attributes:
        name: Model name.
        version: Model version.
        labels: Class codes in output order (the TENSOR_AXIS_LABELS file).
        display_names: Human names in output order, or empty when the file has none.
        mean: Per-channel normalization mean of the image input.
        std: Per-channel normalization std of the image input.
        min_parser_version: The oldest metadata parser that can read the file.
        heads: Output tensor names in output order (``("probability",)``, or with the abstain head
            ``("probability", "in_distribution")``).
        abstain_labels: The abstain head's score names, or empty without a head.
        license: License of the weights.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    display_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min_parser_version: str
    heads: tuple[str, ...] = ("probability",)
    abstain_labels: tuple[str, ...] = ()
    license: str = ""


def _schemas() -> tuple[Any, Any, Any]:
    try:
        import flatbuffers
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
        from mediapipe.tasks.metadata import schema_py_generated as schema_fb
    except ImportError as error:
        raise ImportError(
            f"writing TFLite metadata needs the mediapipe and flatbuffers packages ({error}); "
            "install them with `pip install mediapipe`"
        ) from error
    return flatbuffers, metadata_fb, schema_fb


def add_metadata(
    model: bytes,
    *,
    labels: Sequence[str],
    input_spec: InputSpec,
    name: str,
    version: str = "",
    description: str = "",
    license: str = UNSTATED_LICENSE,
    display_names: Sequence[str] | None = None,
    abstain_labels: Sequence[str] | None = None,
) -> bytes:
    """Returns ``model`` with image-classifier metadata and label files packed in.

    A model with a second output (the abstain head, ``converters.abstain_head``) gets it described as a
    second classification head named ``in_distribution`` with ``abstain_labels``; the outputs are put in
    the order [probabilities, in_distribution], so MediaPipe returns them as ``classifications[0]`` and
    ``classifications[1]`` and every runtime finds the class scores at output 0.

    Args:
        model: A TFLite flatbuffer with one image input and one score output (without packed files).
        labels: Class codes in output order; MediaPipe reports them as ``category_name``.
        input_spec: Source of the normalization (mean/std) a float input needs.
        name: Model name stored in the metadata.
        version: Model version.
        description: One sentence on what the model does.
        license: License of the weights: the build passes its task's (``edge.tasks.Task.license``).
        display_names: Human names in output order; MediaPipe reports them as ``display_name``.
        abstain_labels: The abstain head's two score names (e.g. ``("dermoscopy", "other")``); needed
            exactly when the model has a second output.

    Raises:
        ValueError: The model has not one input and one output (two with ``abstain_labels``), a label is
            empty or contains a line break, or ``display_names`` has a different length from ``labels``.
    """
    flatbuffers, metadata_fb, schema_fb = _schemas()
    _check_labels(labels, "labels")
    if display_names is not None:
        _check_labels(display_names, "display_names")
        if len(display_names) != len(labels):
            raise ValueError(f"display_names has {len(display_names)} entries but labels has {len(labels)}")

    tflite = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(model, 0))
    graph = tflite.subgraphs[0]
    expected_outputs = 1 if abstain_labels is None else 2
    if len(graph.inputs) != 1 or len(graph.outputs) != expected_outputs:
        raise ValueError(
            f"an image classifier {'with' if abstain_labels else 'without'} an abstain head needs "
            f"1 input and {expected_outputs} output tensors, the model has {len(graph.inputs)} "
            f"and {len(graph.outputs)}"
        )
    if abstain_labels is not None:
        _check_labels(abstain_labels, "abstain_labels")
        _put_scores_first(tflite, len(labels))
    input_uint8 = graph.tensors[graph.inputs[0]].type == schema_fb.TensorType.UINT8
    output_uint8 = graph.tensors[graph.outputs[0]].type == schema_fb.TensorType.UINT8

    image = metadata_fb.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"RGB image, {input_spec.height}x{input_spec.width} pixels "
        f"({input_spec.resize} resize policy, see edge.preprocess)"
    )
    image.content = metadata_fb.ContentT()
    image.content.contentPropertiesType = metadata_fb.ContentProperties.ImageProperties
    image.content.contentProperties = metadata_fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = metadata_fb.ColorSpaceType.RGB
    normalization = metadata_fb.ProcessUnitT()
    normalization.optionsType = metadata_fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = metadata_fb.NormalizationOptionsT()
    normalization.options.mean = [float(v) for v in input_spec.mean]
    normalization.options.std = [float(v) for v in input_spec.std]
    image.processUnits = [normalization]
    image.stats = metadata_fb.StatsT()
    if input_uint8:
        image.stats.min, image.stats.max = [0.0], [255.0]
    else:
        image.stats.min = [(0.0 - m) / s for m, s in zip(input_spec.mean, input_spec.std)]
        image.stats.max = [(255.0 - m) / s for m, s in zip(input_spec.mean, input_spec.std)]

    score = metadata_fb.TensorMetadataT()
    score.name = "probability"
    score.description = "Probability of each class, in labels.txt order."
    score.content = metadata_fb.ContentT()
    score.content.contentPropertiesType = metadata_fb.ContentProperties.FeatureProperties
    score.content.contentProperties = metadata_fb.FeaturePropertiesT()
    score.stats = metadata_fb.StatsT()
    score.stats.min, score.stats.max = ([0.0], [255.0]) if output_uint8 else ([0.0], [1.0])
    files = {LABELS_FILE: labels}
    score.associatedFiles = [_associated_file(metadata_fb, LABELS_FILE, "Class codes, one per output.")]
    if display_names is not None:
        files[DISPLAY_NAMES_FILE] = display_names
        score.associatedFiles.append(
            _associated_file(
                metadata_fb, DISPLAY_NAMES_FILE, "Display names, one per output.", DISPLAY_NAMES_LOCALE
            )
        )

    subgraph = metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [score]
    if abstain_labels is not None:
        files[ABSTAIN_LABELS_FILE] = abstain_labels
        head = metadata_fb.TensorMetadataT()
        head.name = ABSTAIN_HEAD_NAME
        head.description = (
            f"Whether the image looks like the training data: '{abstain_labels[0]}', or "
            f"'{abstain_labels[1]}' (say \"I can't tell\" when '{abstain_labels[1]}' "
            "scores 0.5 or more)."
        )
        head.content = metadata_fb.ContentT()
        head.content.contentPropertiesType = metadata_fb.ContentProperties.FeatureProperties
        head.content.contentProperties = metadata_fb.FeaturePropertiesT()
        head.stats = metadata_fb.StatsT()
        head.stats.min, head.stats.max = score.stats.min, score.stats.max
        head.associatedFiles = [
            _associated_file(metadata_fb, ABSTAIN_LABELS_FILE, "Abstain head labels, one per output.")
        ]
        subgraph.outputTensorMetadata.append(head)
    metadata = metadata_fb.ModelMetadataT()
    metadata.name, metadata.version, metadata.description = name, version, description
    metadata.author, metadata.license = "skinlesion", license
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)

    buffer = schema_fb.BufferT()
    buffer.data = builder.Output()
    tflite.metadata = [m for m in (tflite.metadata or []) if _text(m.name) != METADATA_NAME]
    tflite.buffers.append(buffer)
    entry = schema_fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(tflite.buffers) - 1
    tflite.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), MODEL_IDENTIFIER)

    # Label files ride along as a zip archive appended to the flatbuffer, as the official writer does;
    # flatbuffer readers ignore trailing bytes and MediaPipe opens the zip from the end of the file.
    stream = io.BytesIO(bytes(builder.Output()))
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a") as archive:
        for file_name, lines in files.items():
            archive.writestr(file_name, "\n".join(lines) + "\n")
    return stream.getvalue()


def read_metadata(model: bytes) -> TFLiteMetadata:
    """Reads back what :func:`add_metadata` wrote.

    Raises:
        ValueError: The file carries no TFLite metadata or no label file.
    """
    _, metadata_fb, schema_fb = _schemas()
    tflite = schema_fb.Model.GetRootAsModel(model, 0)
    buffer = None
    for i in range(tflite.MetadataLength()):
        if _text(tflite.Metadata(i).Name()) == METADATA_NAME:
            buffer = tflite.Buffers(tflite.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    if buffer is None:
        raise ValueError("the model has no TFLite metadata; export it with converters.export.export_tflite")
    root = metadata_fb.ModelMetadata.GetRootAsModelMetadata(buffer, 0)
    metadata = metadata_fb.ModelMetadataT.InitFromObj(root)
    subgraph = metadata.subgraphMetadata[0]
    options = subgraph.inputTensorMetadata[0].processUnits[0].options
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        packed = {name: archive.read(name).decode("utf-8").splitlines() for name in archive.namelist()}
    if LABELS_FILE not in packed:
        raise ValueError(f"the model's metadata has no {LABELS_FILE}; packed files: {sorted(packed)}")
    return TFLiteMetadata(
        name=_text(metadata.name),
        version=_text(metadata.version),
        labels=parse_labels("\n".join(packed[LABELS_FILE]), f"the {LABELS_FILE} in the model's metadata"),
        display_names=tuple(packed.get(DISPLAY_NAMES_FILE, ())),
        mean=tuple(float(v) for v in options.mean),
        std=tuple(float(v) for v in options.std),
        min_parser_version=_text(metadata.minParserVersion),
        heads=tuple(_text(t.name) for t in subgraph.outputTensorMetadata),
        abstain_labels=tuple(packed.get(ABSTAIN_LABELS_FILE, ())),
        license=_text(metadata.license),
    )


def _put_scores_first(tflite: Any, num_classes: int) -> None:
    """Orders the subgraph outputs [class scores, abstain head]: the converter orders them as it likes.

    The outputs are told apart by the Keras output names in the signature (``in_distribution`` is the
    head), or by their sizes when the file has no signature.
    """
    graph = tflite.subgraphs[0]
    head = None
    for signature in tflite.signatureDefs or []:
        for output in signature.outputs or []:
            if _text(output.name) == ABSTAIN_HEAD_NAME:
                head = output.tensorIndex
    if head is None:
        sizes = {index: int(graph.tensors[index].shape[-1]) for index in graph.outputs}
        heads = [index for index, size in sizes.items() if size == 2 and num_classes != 2]
        if len(heads) != 1:
            raise ValueError(
                "cannot tell the abstain head from the class scores: the file has no signature "
                f"naming {ABSTAIN_HEAD_NAME!r} and its outputs have sizes {list(sizes.values())}"
            )
        head = heads[0]
    if head not in list(graph.outputs):
        raise ValueError(f"the signature's {ABSTAIN_HEAD_NAME!r} tensor {head} is not a model output")
    graph.outputs = [int(index) for index in graph.outputs if index != head] + [int(head)]


def _associated_file(metadata_fb: Any, name: str, description: str, locale: str | None = None) -> Any:
    file = metadata_fb.AssociatedFileT()
    file.name, file.description, file.locale = name, description, locale
    file.type = metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    return file


def _check_labels(values: Sequence[str], what: str) -> None:
    if not values:
        raise ValueError(f"{what} is empty; pass one entry per model output")
    for value in values:
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            raise ValueError(f"{what} entries must be non-empty single-line strings, got {value!r}")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else (value or "")
