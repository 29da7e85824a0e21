"""The edge runtime never imports TensorFlow when LiteRT is installed (what a Raspberry Pi relies on)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.edge.conftest import solid

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from edge.cli import main
from edge.classifier import Classifier
import edge.bench, edge.camera
status = main(["classify", sys.argv[1], "--bundle", sys.argv[2], "--json"])
classifier = Classifier(sys.argv[2])
classifier.classify(sys.argv[1], tta=True)
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "jax", "torch"))
print(json.dumps({"status": status, "interpreter": classifier.interpreter_name, "heavy": heavy}))
"""


def test_classifying_with_litert_never_imports_tensorflow(edge_bundle, tmp_path):
    image = tmp_path / "red.png"
    Image.fromarray(solid("red")).save(image)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(image), str(edge_bundle)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["top"]["label"] == "red"
    report = json.loads(lines[-1])
    assert report == {"status": 0, "interpreter": "ai_edge_litert", "heavy": []}
    assert np.isfinite(json.loads(lines[0])["top"]["score"])
