"""labels.txt: one class per line, line number = output index; anything else is refused, naming the file."""

from __future__ import annotations

import shutil

import pytest

from edge.bundle import load_bundle
from edge.card import LABELS_FILE
from edge.classifier import Classifier
from edge.errors import BundleError, LabelsError
from edge.labels import parse_labels, read_labels
from tests.edge.conftest import LABELS


def test_reads_codes_in_output_order(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeffmel \r\n nv\r\nbcc\r\n\r\n\n".encode())  # Notepad's BOM, CRLF, trailing blanks
    assert read_labels(path) == ("mel", "nv", "bcc")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("\n \n", "is empty"),
        ("mel\n\nnv\n", "line 2 is blank"),
        ("\nmel\nnv\n", "line 1 is blank"),
        ("mel\nnv\nmel\n", "lists mel more than once"),
    ],
)
def test_an_empty_blank_lined_or_repeating_file_is_refused_by_name(tmp_path, text, message):
    path = tmp_path / "my_labels.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelsError, match=message) as caught:
        read_labels(path)
    assert str(caught.value).startswith(str(path))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(LabelsError, match=f"{tmp_path / 'labels.txt'} not found"):
        read_labels(tmp_path / "labels.txt")


def test_parse_names_its_origin():
    with pytest.raises(LabelsError, match="^the labels in the metadata lists a more than once"):
        parse_labels("a\nb\na", "the labels in the metadata")


def test_a_bundle_with_a_repeated_label_is_a_bundle_error(make_bundle):
    folder = make_bundle()
    (folder / LABELS_FILE).write_text("red\ngreen\nred\n", encoding="utf-8")
    with pytest.raises(BundleError, match=f"{folder.resolve() / LABELS_FILE} lists red more than once"):
        load_bundle(folder)


def test_a_bare_model_with_a_blank_line_in_its_labels_is_refused(tiny_models, tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copyfile(tiny_models.float32, model)
    (tmp_path / LABELS_FILE).write_text("\n".join((LABELS[0], "", *LABELS[1:])), encoding="utf-8")
    with pytest.raises(LabelsError, match=f"{tmp_path / LABELS_FILE}: line 2 is blank"):
        Classifier(model)
