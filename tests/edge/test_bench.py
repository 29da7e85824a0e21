"""``python -m edge bench``: the JSON a user (and the docs table) reads."""

from __future__ import annotations

import io
import json

from PIL import Image

from edge import cli
from edge.bench import synthetic_jpeg

LATENCY_KEYS = {"p50_ms", "p90_ms", "p99_ms", "mean_ms"}


def test_bench_json_per_variant_and_thread_count(edge_bundle, capsys):
    status = cli.main(
        ["bench", str(edge_bundle), "--threads", "1,2", "--runs", "4", "--warmup", "1", "--json"]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(edge_bundle) and report["machine"]["cpu_count"] >= 1
    results = report["results"]
    assert [(r["variant"], r["threads"]) for r in results] == [
        ("int8", 1),
        ("int8", 2),
        ("float32", 1),
        ("float32", 2),
    ]
    for result in results:
        assert result["interpreter"] == "ai_edge_litert" and result["runs"] == 4
        for key in ("invoke", "pipeline"):
            assert set(result[key]) == LATENCY_KEYS
            assert 0 < result[key]["p50_ms"] <= result[key]["p90_ms"] <= result[key]["p99_ms"]
        # The pipeline decodes a 600x450 JPEG on top of the same invoke.
        assert result["pipeline"]["p50_ms"] > result["invoke"]["p50_ms"]
        assert result["throughput_ips"] > 0 and result["peak_rss_mb"] > 10 and result["model_bytes"] > 1000
        assert result["image"] == "synthetic 600x450 JPEG"


def test_bench_table_for_a_bare_file_and_one_variant(tiny_models, edge_bundle, capsys):
    assert cli.main(["bench", str(tiny_models.float32), "--runs", "2", "--warmup", "0"]) == 0
    table = capsys.readouterr().out
    assert "invoke p50" in table and "float32.tflite" in table
    assert cli.main(["bench", str(edge_bundle), "--variant", "float32", "--runs", "2", "--json"]) == 0
    assert [r["variant"] for r in json.loads(capsys.readouterr().out)["results"]] == ["float32"]


def test_bench_usage_errors(edge_bundle, capsys):
    assert cli.main(["bench", str(edge_bundle), "--variant", "float16", "--runs", "1"]) == 2
    assert "no float16 model" in capsys.readouterr().err
    assert cli.main(["bench", str(edge_bundle), "--threads", "one"]) == 2


def test_synthetic_jpeg_is_a_camera_sized_photo():
    image = Image.open(io.BytesIO(synthetic_jpeg()))
    assert image.format == "JPEG" and image.size == (600, 450)
