"""``python -m edge classify``: folders, streaming CSV, errors in their rows, exit status."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil

import pytest
from PIL import Image

from edge import cli
from edge.classifier import Classifier
from tests.edge.conftest import LABELS, solid


@pytest.fixture
def image_folder(tmp_path):
    """Two good images, one nested, a corrupt JPEG and a text file that is not an image."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(solid("red")).save(folder / "a_red.png")
    (folder / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    Image.fromarray(solid("blue")).save(folder / "nested" / "c_blue.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _rows(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_csv_keeps_going_past_a_corrupt_file(edge_bundle, image_folder, tmp_path, capsys):
    out = tmp_path / "results.csv"
    status = cli.main(["classify", str(image_folder), "--bundle", str(edge_bundle), "--csv", str(out)])
    assert status == 1
    rows = _rows(out)
    assert [r["source"].split("/")[-1] for r in rows] == ["a_red.png", "b_corrupt.jpg", "c_blue.jpg"]
    assert [r["top_label"] for r in rows] == ["red", "", "blue"]
    assert rows[1]["error"] and "b_corrupt.jpg" in rows[1]["error"] and not rows[0]["error"]
    assert float(rows[0]["p_red"]) > 0.9
    assert float(rows[0]["malignant_probability"]) == float(rows[0]["p_red"])
    assert set(f"p_{label}" for label in LABELS) <= set(rows[0])
    captured = capsys.readouterr()
    assert "1 of 3 images failed" in captured.err
    assert "Red test lesion (red)" in captured.out


def test_csv_rows_are_on_disk_as_they_are_classified(edge_bundle, image_folder, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    original = Classifier.classify
    calls = []

    def interrupted(self, image, **kwargs):
        calls.append(image)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user gives up on a long run
        return original(self, image, **kwargs)

    monkeypatch.setattr(Classifier, "classify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["classify", str(image_folder), "--bundle", str(edge_bundle), "--csv", str(out)])
    assert [r["source"].split("/")[-1] for r in _rows(out)] == ["a_red.png", "b_corrupt.jpg"]


def test_all_good_exits_zero_with_json_lines(edge_bundle, image_folder, capsys):
    (image_folder / "b_corrupt.jpg").unlink()
    status = cli.main(["classify", str(image_folder), "--bundle", str(edge_bundle), "--json", "--top-k", "2"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["top"]["label"] for line in lines] == ["red", "blue"]
    assert all(len(line["categories"]) == 2 for line in lines)


def test_bare_model_with_labels_file(tiny_models, tmp_path, capsys):
    labels = tmp_path / "my_labels.txt"
    labels.write_text("\n".join(LABELS))
    image = tmp_path / "green.png"
    Image.fromarray(solid("green")).save(image)
    status = cli.main(["classify", str(image), "--model", str(tiny_models.int8), "--labels", str(labels)])
    assert status == 0
    assert capsys.readouterr().out.startswith(f"{image}: green (green)")


def test_missing_file_is_a_failure_not_a_crash(edge_bundle, tmp_path, capsys):
    status = cli.main(["classify", str(tmp_path / "nope.jpg"), "--bundle", str(edge_bundle)])
    assert status == 1
    assert "nope.jpg: file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bundle", "/no/such/bundle"], "not found"),
        (["--labels", "labels.txt"], "--labels goes with a model file"),
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--csv", "/no/such/dir/out.csv"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(edge_bundle, image_folder, capsys, extra, message):
    model = [] if "--bundle" in extra else ["--bundle", str(edge_bundle)]
    args = ["classify", str(image_folder)] + model + extra
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err


def test_empty_folder_and_bad_flags_exit_2(edge_bundle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["classify", str(tmp_path / "empty"), "--bundle", str(edge_bundle)]) == 2
    assert "no images found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["classify", "x.jpg", "--no-such-flag"])
    assert exit_info.value.code == 2


def test_bundle_variant_is_honoured(edge_bundle, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(edge_bundle, copy)
    image = tmp_path / "red.png"
    Image.fromarray(solid("red")).save(image)
    assert cli.main(["classify", str(image), "--bundle", str(copy), "--variant", "float16"]) == 2
    assert "no 'float16' model" in capsys.readouterr().err
    assert cli.main(["classify", str(image), "--bundle", str(copy), "--variant", "float32", "--json"]) == 0


def test_predict_style_positional_model(edge_bundle, tiny_models, tmp_path):
    """``skinlesion predict MODEL IMAGE...`` reuses classify with the model as its first argument."""
    parser = argparse.ArgumentParser(prog="skinlesion predict")
    cli.add_classify_args(parser, model_argument=True)
    image = tmp_path / "blue.png"
    Image.fromarray(solid("blue")).save(image)
    for model in (edge_bundle, tiny_models.reference):
        stdout = io.StringIO()
        args = parser.parse_args(
            [str(model), str(image), "--json"]
            + ([] if model.is_dir() else ["--labels", str(_labels(tmp_path))])
        )
        assert cli.run_classify(args, stdout=stdout, stderr=io.StringIO()) == 0
        assert json.loads(stdout.getvalue())["top"]["label"] == "blue"


def _labels(folder):
    path = folder / "labels_for_keras.txt"
    path.write_text("\n".join(LABELS))
    return path


def test_iphone_heic_photos_classify_when_pillow_heif_is_installed(edge_bundle, tmp_path, capsys):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC support is the optional pillow-heif")
    # Written with pillow-heif's own writer: Pillow can read it only once the CLI registers the opener.
    pillow_heif.from_pillow(Image.fromarray(solid("green"))).save(tmp_path / "IMG_0001.HEIC")
    assert cli.main(["classify", str(tmp_path), "--bundle", str(edge_bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"]["label"] == "green"
