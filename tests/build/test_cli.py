"""The ``skinlesion`` command, end to end on a tiny synthetic data set."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from build.cli import build_parser, main
from edge.bundle import load_bundle
from tests.build.make.test_train import TINY_TOML, write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def test_every_documented_command_is_there():
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no API
    assert {
        "data",
        "build",
        "train",
        "qat",
        "export",
        "validate",
        "evaluate",
        "sweep",
        "predict",
        "bench",
        "app",
    } <= set(commands)


def test_run_folder_option_does_not_shadow_the_command():
    args = build_parser().parse_args(["build", "--run", "runs/x", "--set", "train.epochs=1"])
    assert args.run_dir == Path("runs/x") and callable(args.run)


def test_app_options_reach_the_demo(monkeypatch):
    import gradio_app.__main__ as demo

    seen = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(argv) or 0)
    assert main(["app", "--bundle", "models/pretrained", "--port", "7999"]) == 0
    assert seen == [["--bundle", "models/pretrained", "--port", "7999"]]


def test_a_missing_config_is_a_clear_error(tmp_path, capsys):
    assert main(["build", "--config", str(tmp_path / "nope.toml"), "--run", str(tmp_path / "run")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_finishing_training_without_resume_is_a_clear_error(tmp_path, capsys):
    assert (
        main(["build", "--config", str(TINY_TOML), "--run", str(tmp_path / "run"), "--finish-training"]) == 2
    )
    assert "pass it with --resume" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_predict_and_bench_need_no_tensorflow_import_at_parse_time():
    code = (
        "import sys; from build.cli import build_parser; build_parser(); "
        "print(any(m.startswith('tensorflow') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "False"


def test_data_summary_writes_rules_and_prints_counts(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", n_per_class=6)
    assert main(["data", "summary", str(data), "--out", str(tmp_path / "summary")]) == 0
    printed = capsys.readouterr().out
    assert "rdl" in printed and "18" in printed
    assert (tmp_path / "summary" / "summary.json").exists()


@pytest.mark.slow
def test_build_publishes_a_bundle_that_predict_and_evaluate_accept(tmp_path, capsys, caplog):
    data = write_synthetic_dataset(tmp_path / "data", n_per_class=24)
    # An external test set that repeats some of the training data's images (same class folder and name).
    external = write_synthetic_dataset(tmp_path / "external", n_per_class=30)
    ids = {
        root: {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.png")}
        for root in (data, external)
    }
    published = tmp_path / "published"
    caplog.set_level(logging.INFO)
    status = main(
        [
            "build",
            "--config",
            str(TINY_TOML),
            "--data",
            str(data),
            "--run",
            str(tmp_path / "run"),
            "--publish",
            str(published),
            "--set",
            f"export.external_data=['{external}']",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("build finished in") and f"published to {published}" in last
    assert list((tmp_path / "run" / "cache").glob("pixels-*.npy"))  # the cache lives in the run folder
    # Progress: plain lines (the log is no terminal) with rate and ETA, and no TensorFlow chatter.
    assert any(
        "float epoch 1/3" in r.message and "images/s" in r.message and "ETA" in r.message
        for r in caplog.records
    )
    assert not any("Sharding callback" in r.getMessage() for r in caplog.records)
    bundle = load_bundle(published)
    assert bundle.card.labels == ["blu", "grn", "rdl"]  # folder names, sorted
    assert "int8" in bundle.variants and bundle.card.validation["int8"]["n"] > 0
    # The int8 file from QAT is also checked against the QAT model it was converted from.
    assert 0.0 <= bundle.card.validation["int8-qat"]["qat_model"]["top1_agreement"] <= 1.0
    assert bundle.card.training["split"]["grouped_by"] == "lesion_id"
    assert len(bundle.card.training["float"]["logit_shift"]) == 3  # to quantize the release again later
    assert {"val", "test"} <= set(bundle.card.metrics) and bundle.card.temperature > 0
    # The external set is scored on the images the run's data lack, and says so in its report.
    assert (
        0
        < bundle.card.metrics["external external"]["n"]
        == len(ids[external] - ids[data])
        < len(ids[external])
    )
    assert (tmp_path / "run" / "export" / "report-external-external" / "report.md").exists()
    assert bundle.card.test_time_views == 2  # tiny.toml's: every file averages two views in its graph

    # Exporting again with nothing changed reuses every file and its parity check, the calibrated ones too,
    # and writes the same card.
    fresh = load_bundle(tmp_path / "run" / "bundle").card
    caplog.clear()
    assert main(["export", str(tmp_path / "run")]) == 0
    reused = [r.getMessage() for r in caplog.records if "unchanged since the last export" in r.getMessage()]
    # float32, int8 from QAT, int8 by post-training quantization; then the calibrated int8 and float32
    assert len(reused) == 5 and sum("export: final/" in message for message in reused) == 2
    assert not any(r.getMessage().startswith(("exporting", "validated")) for r in caplog.records)
    again = load_bundle(tmp_path / "run" / "bundle")
    assert again.card.metrics["test"]["balanced_accuracy"] == bundle.card.metrics["test"]["balanced_accuracy"]
    assert _timeless(again.card) == _timeless(fresh)

    capsys.readouterr()
    image = next((data / "rdl").glob("*.png"))
    assert main(["predict", str(published), str(image), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(prediction["categories"]) == 3

    out = tmp_path / "eval"
    assert main(["evaluate", str(published), "--data", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert (out / "report.html").exists()


def _timeless(card) -> dict:
    """A card without the fields that record when it was written and how long that took."""
    fields = dataclasses.asdict(card)
    del fields["created"], fields["version"], fields["training"]["export_seconds"]
    return fields


def test_a_failed_gate_is_the_last_thing_the_build_says(tmp_path, capsys, monkeypatch):
    import build.build as build_module
    import build.make.qat
    import build.make.train

    from build.make.results import ExportResult, FloatResult, QatResult

    data = write_synthetic_dataset(tmp_path / "data", n_per_class=4)
    monkeypatch.setattr(
        build.make.train,
        "train_float",
        lambda ctx, finish=False: FloatResult(ctx.run.root / "float" / "model.keras"),
    )
    monkeypatch.setattr(
        build.make.qat,
        "apply_qat",
        lambda ctx, floated, finish=False: QatResult(ctx.run.root / "qat" / "model.h5"),
    )
    monkeypatch.setattr(
        build_module,
        "export_run",
        lambda ctx, floated, quantized, publish=None: ExportResult(
            passed=False, parity=ctx.run.root / "export" / "parity.json"
        ),
    )

    status = main(
        [
            "build",
            "--config",
            str(TINY_TOML),
            "--data",
            str(data),
            "--run",
            str(tmp_path / "run"),
            "--publish",
            str(tmp_path / "published"),
        ]
    )

    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert status == 1
    assert last.startswith("build FAILED after") and "nothing was published" in last and "parity.json" in last
    assert not (tmp_path / "published").exists()


# -- --version, missing extras, --help examples ----------------------------------------------------------


def test_version_prints_the_code_and_the_shipped_cards(capsys):
    from edge.cli import code_version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"skinlesion {code_version()}\n")
    card = REPO / "models" / "pretrained" / "msid" / "model_card.json"
    if card.is_file():
        data = json.loads(card.read_text())
        assert f"bundle msid: {data['name']} {data['version']}" in out


@pytest.mark.parametrize(
    "argv, module, extra",
    [
        (["data", "summary", "some/data"], "pandas", "build"),
        (["evaluate", "ham10000", "--data", "some/data"], "pandas", "build"),
        (["app", "--port", "7999"], "gradio", "app"),
    ],
)
def test_a_missing_extra_is_named_instead_of_a_traceback(argv, module, extra, monkeypatch, capsys):
    for name in list(sys.modules):
        if (
            name == module
            or name.startswith(module + ".")
            or name.startswith(
                ("gradio_app", "build.analysis.summary", "build.analysis.evaluate", "build.make.datasets")
            )
        ):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # `import pandas` fails as on the base install
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"needs {module}" in err and f'pip install "skinlesion[{extra}]"' in err
    assert "Traceback" not in err


def _subparsers(parser):
    import argparse

    found = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public API for its subparsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def test_every_command_has_an_example_and_every_option_a_help_text():
    import argparse

    from build.cli import EXAMPLES
    from gradio_app.__main__ import EXAMPLE, build_parser as app_parser

    parser = build_parser()
    commands = {"": parser, **_subparsers(parser)}
    assert {"data summary", "build", "evaluate", "predict", "app"} <= set(commands)
    # `skinlesion app` hands its arguments to the demo's own parser: check that one, not the listing.
    commands["app"] = app_parser()
    assert EXAMPLES["app"] == EXAMPLE
    for name, sub in commands.items():
        text = sub.format_help()
        assert f"\nexample:\n  skinlesion {name}".rstrip() in text, (name, text[-300:])
        for action in sub._actions:  # noqa: SLF001
            if not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - choices carry the help
                assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
