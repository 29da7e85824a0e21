"""The bundle writer: a loadable, checksummed folder, replaced atomically even when killed midway."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from converters.bundle import publish_bundle, write_bundle
from edge.bundle import file_sha256, load_bundle
from edge.card import CARD_FILE, LABELS_FILE, ModelCard
from edge.errors import BundleError
from tests.conftest import TINY_BUNDLE_VARIANTS, TINY_LABELS

REPO = Path(__file__).resolve().parents[2]


def _card(bundle: Path) -> ModelCard:
    return ModelCard.from_dict(json.loads((bundle / CARD_FILE).read_text()))


def _hidden_siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_tiny_bundle_loads_and_its_card_matches_the_files(tiny_bundle):
    bundle = load_bundle(tiny_bundle)  # the runtime's own checks: labels, sizes, sha256
    assert bundle.labels == TINY_LABELS
    assert (tiny_bundle / LABELS_FILE).read_text() == "rdl\ngrn\nblu\n"
    card = _card(tiny_bundle)
    assert set(card.files) == {*TINY_BUNDLE_VARIANTS, "reference"}
    for entry in card.files.values():
        path = tiny_bundle / entry.path
        assert (path.stat().st_size, file_sha256(path)) == (entry.bytes, entry.sha256)
    assert card.files["int8"].path == "model_int8.tflite"
    assert card.files["reference"].path == "reference.keras"
    assert card.validation["int8"]["top1_agreement"] >= 0.985
    assert card.malignant_indices == [0]


def test_rewriting_replaces_the_bundle_and_leaves_nothing_behind(tmp_path, tiny_bundle):
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    card = dataclasses.replace(_card(folder), version="2.0.0")
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.md").write_text("# report\n")
    write_bundle(
        folder, card, {"float32": tiny_bundle / "model_float32.tflite"}, reference=None, report_dir=report
    )
    bundle = load_bundle(folder)
    assert bundle.card.version == "2.0.0"
    assert set(bundle.card.files) == {"float32"}  # the old int8 and reference are gone with the old bundle
    assert not (folder / "model_int8.tflite").exists()
    assert (folder / "report" / "summary.md").read_text() == "# report\n"
    assert _hidden_siblings(folder) == []


def test_a_model_that_does_not_fit_the_card_is_refused_before_writing(tmp_path, tiny_bundle):
    card = _card(tiny_bundle)
    two_classes = dataclasses.replace(card, classes=card.classes[:2])
    folder = tmp_path / "bundle"
    with pytest.raises(BundleError, match="outputs 3 scores but the card lists 2 classes"):
        write_bundle(
            folder, two_classes, {"int8": tiny_bundle / "model_int8.tflite"}, reference=None, report_dir=None
        )
    with pytest.raises(BundleError, match="unknown variant 'int4'"):
        write_bundle(
            folder, card, {"int4": tiny_bundle / "model_int8.tflite"}, reference=None, report_dir=None
        )
    with pytest.raises(BundleError, match="missing.tflite not found"):
        write_bundle(folder, card, {"int8": tmp_path / "missing.tflite"}, reference=None, report_dir=None)
    assert list(tmp_path.iterdir()) == []


WRITER = textwrap.dedent("""
    import dataclasses, json, sys, time
    from pathlib import Path
    import converters.bundle as bundle_module
    from edge.card import ModelCard

    source, folder = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_copy(src, dst):  # writes half a file, then stalls: the kill lands mid-write
        data = Path(src).read_bytes()
        with open(dst, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
        print("copying", flush=True)
        time.sleep(120)

    bundle_module._copy_file = slow_copy
    card = ModelCard.from_dict(json.loads((source / "model_card.json").read_text()))
    bundle_module.write_bundle(folder, dataclasses.replace(card, version="9.9.9"),
                               {"int8": source / "model_int8.tflite"}, reference=None, report_dir=None)
""")


def test_a_write_killed_midway_leaves_the_previous_bundle_intact(tmp_path, tiny_bundle):
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tiny_bundle), str(folder)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert writer.stdout.readline().strip() == "copying"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert len(_hidden_siblings(folder)) == 1  # the half-written staging folder

    bundle = load_bundle(folder)
    assert bundle.card.version == _card(tiny_bundle).version
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before

    # The next write cleans up after the killed one.
    write_bundle(
        folder,
        dataclasses.replace(bundle.card, version="3.0.0"),
        {"int8": tiny_bundle / "model_int8.tflite"},
        reference=None,
        report_dir=None,
    )
    assert load_bundle(folder).card.version == "3.0.0"
    assert _hidden_siblings(folder) == []


def test_an_old_bundle_moved_aside_by_a_killed_swap_is_restored(tmp_path, tiny_bundle, monkeypatch):
    # A kill between "old aside" and "new in" leaves only the moved-aside folder. The next write puts it
    # back first, so even when that write fails too (here: a full disk), the old bundle is there.
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, tmp_path / ".bundle.old-1234abcd")

    def disk_full(source, target):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr("converters.bundle._copy_file", disk_full)
    card = _card(tiny_bundle)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(
            folder,
            dataclasses.replace(card, version="4.0.0"),
            {"int8": tiny_bundle / "model_int8.tflite"},
            reference=None,
            report_dir=None,
        )
    assert load_bundle(folder).card.version == card.version
    assert _hidden_siblings(folder) == []  # the failed staging folder is removed too


# --- publishing a built bundle ----------------------------------------------------------------------


def test_publishing_releases_the_built_files_and_card_without_the_float_reference(tmp_path, tiny_bundle):
    built = tmp_path / "run" / "bundle"
    shutil.copytree(tiny_bundle, built)
    (built / "report").mkdir()
    (built / "report" / "report.md").write_text("# measured\n")
    release = tmp_path / "models" / "pretrained" / "tiny"

    publish_bundle(built, release)

    published = load_bundle(release)
    assert set(published.card.files) == set(TINY_BUNDLE_VARIANTS)  # no reference.keras in the release
    assert not (release / "reference.keras").exists()
    for variant in TINY_BUNDLE_VARIANTS:
        assert file_sha256(published.path(variant)) == _card(built).files[variant].sha256
    assert published.card.validation == _card(built).validation
    assert (release / "report" / "report.md").read_text() == "# measured\n"


def test_a_bundle_changed_since_it_was_built_is_not_published(tmp_path, tiny_bundle):
    built = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, built)
    with open(built / "model_int8.tflite", "ab") as handle:
        handle.write(b"\0")
    release = tmp_path / "release"
    shutil.copytree(tiny_bundle, release)
    before = sorted((p.name, file_sha256(p)) for p in release.glob("*.tflite"))

    with pytest.raises(BundleError, match="model_int8.tflite"):
        publish_bundle(built, release)
    assert sorted((p.name, file_sha256(p)) for p in release.glob("*.tflite")) == before
    with pytest.raises(BundleError, match="is the bundle being published"):
        publish_bundle(release, release)


def test_the_publish_command_names_what_it_released(tmp_path, tiny_bundle, capsys):
    from build.cli import main

    assert main(["publish", str(tiny_bundle), str(tmp_path / "release")]) == 0
    assert "model_float32.tflite, model_int8.tflite" in capsys.readouterr().out
    assert main(["publish", str(tmp_path / "missing"), str(tmp_path / "release")]) == 2
    assert "missing" in capsys.readouterr().err
