"""The quantization-scheme benchmark runs end to end on a tiny run and says what it needs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow_model_optimization", reason="QAT needs tensorflow-model-optimization")

from benchmarks.qat_scheme import SCHEMES, main  # noqa: E402
from build.make.context import prepare  # noqa: E402
from build.make.run import start_run  # noqa: E402
from build.make.train import train_float  # noqa: E402
from tests.build.make.test_train import tiny_config, write_synthetic_dataset  # noqa: E402


@pytest.mark.slow
def test_every_scheme_gets_a_validated_int8_file(tmp_path, capsys):
    config = tiny_config(write_synthetic_dataset(tmp_path / "data"), "train.epochs=1")
    run = start_run(tmp_path / "runs" / "tiny", config, resume=False)
    train_float(prepare(run, config))

    status = main(
        [
            str(run.root),
            "--steps",
            "2",
            "--out",
            str(tmp_path / "schemes"),
            "--json",
            str(tmp_path / "rows.json"),
        ]
    )

    assert status == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["scheme"] for row in rows] == list(SCHEMES)
    for row in rows:
        assert 0 <= row["top1_agreement"] <= 1 and 0 <= row["test_balanced_accuracy"] <= 1
        assert (tmp_path / "schemes" / row["scheme"] / "model_int8.tflite").is_file()
    # The source run is untouched: QAT happened in the copies.
    assert not (run.root / "qat").exists()
    assert "per-channel" in capsys.readouterr().out


def test_a_run_without_a_float_model_is_refused(tmp_path, capsys):
    config = tiny_config(tmp_path / "data")
    run = start_run(tmp_path / "runs" / "empty", config, resume=False)

    assert main([str(run.root)]) == 2
    assert "train the float model first" in capsys.readouterr().err


def test_unknown_schemes_are_named(tmp_path, capsys):
    assert main([str(tmp_path), "--schemes", "per-channel,int4"]) == 2
    assert "int4" in capsys.readouterr().err
