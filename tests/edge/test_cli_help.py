"""``python -m edge``: --version, shipped bundles by name, display names from a bare model's metadata,
missing extras named, and a --help that ends with an example."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import pytest
from PIL import Image

from edge import cli
from edge.bundle import PRETRAINED, load_bundle, resolve_bundle
from edge.classifier import Classifier
from edge.errors import BundleError
from tests.edge.conftest import solid

SHIPPED = [p.name for p in sorted(PRETRAINED.iterdir()) if (p / "model_card.json").is_file()]
needs_shipped = pytest.mark.skipif(
    not {"ham10000", "msid"} <= set(SHIPPED),
    reason="models/pretrained/ham10000 and msid are not in this checkout",
)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(solid("red", 120, 160)).save(path, quality=95)
    return path


@needs_shipped
def test_version_prints_the_code_and_each_shipped_card(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"skinlesion {cli.code_version()}" and cli.code_version()[0].isdigit()
    for name in ("ham10000", "msid"):
        card = json.loads((PRETRAINED / name / "model_card.json").read_text())
        assert any(line.startswith(f"bundle {name}: {card['name']} {card['version']}") for line in out), out


@needs_shipped
def test_a_shipped_bundle_is_found_by_its_name(photo, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./msid here
    assert cli.main(["classify", "--bundle", "msid", str(photo)]) == 0
    captured = capsys.readouterr()
    assert str(PRETRAINED / "msid" / "model_int8.tflite") in captured.err
    assert "Mpox" in captured.out or "Measles" in captured.out or "Chickenpox" in captured.out
    assert Classifier("ham10000").bundle.folder == (PRETRAINED / "ham10000").resolve()


def test_a_folder_of_that_name_here_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "msid").mkdir()
    assert resolve_bundle("msid") == tmp_path.joinpath("msid").relative_to(tmp_path)
    assert resolve_bundle("no/such/bundle") == tmp_path.joinpath("no/such/bundle").relative_to(tmp_path)


@needs_shipped
def test_an_unknown_name_lists_the_shipped_bundles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match="ham10000, msid"):
        load_bundle("mpox")


@needs_shipped
def test_a_bare_tflite_shows_the_display_names_in_its_metadata(photo, tmp_path, capsys):
    bare = tmp_path / "alone" / "model_int8.tflite"
    bare.parent.mkdir()
    shutil.copyfile(PRETRAINED / "ham10000" / "model_int8.tflite", bare)
    card_names = load_bundle(PRETRAINED / "ham10000").card.display_names
    assert cli.main(["classify", "--model", str(bare), "--top-k", "7", str(photo)]) == 0
    line = capsys.readouterr().out.strip()
    for code, name in card_names.items():
        assert f"{name} ({code})" in line, line
    assert "mel (mel)" not in line
    top = Classifier(bare).classify(photo).top
    assert top.display_name == card_names[top.label]


@needs_shipped
def test_labels_that_do_not_match_the_metadata_get_no_names_from_it(photo, tmp_path):
    bare = tmp_path / "model_int8.tflite"
    shutil.copyfile(PRETRAINED / "ham10000" / "model_int8.tflite", bare)
    labels = list(load_bundle(PRETRAINED / "ham10000").labels)[::-1]  # reordered by hand: names would lie
    prediction = Classifier(bare, labels=labels).classify(photo)
    assert all(c.display_name == c.label for c in prediction.categories)


def test_a_missing_extra_is_named_with_the_pip_command(edge_bundle, photo, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # as on a Pi: the [build] extra is not installed
    status = cli.main(["classify", "--bundle", str(edge_bundle), "--backend", "keras", str(photo)])
    assert status == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "`python -m edge classify` needs tf_keras" in err and 'pip install "skinlesion[build]"' in err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public API for its subparsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def test_every_command_has_an_example_and_every_option_a_help_text():
    parser = cli.build_parser()
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        text = sub.format_help()
        assert "\nexample:\n  python -m edge " in text, name
        for action in sub._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - its choices carry the help
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
