"""How a bundle's trust features do on real data: the abstain rule and Grad-CAM.

    python -m benchmarks.trust models/pretrained/ham10000 --reference runs/ham10000/bundle/reference.keras

Prints JSON: the share of HAM10000 validation/test images the bundle answers, the share of
non-dermoscopic images it refuses (MSID clinical photos, synthetic noise/flat/colour images), and, with
a float reference, the share of Grad-CAM heat inside the expert lesion masks of the full-resolution sample.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def abstain_rates(bundle: Path, data: Path) -> dict:
    from build.make.datasets import load_dataset, split_by_group
    from build.stage_configs import SplitConfig
    from build.analysis.trust import synthetic_images
    from edge.classifier import Classifier

    classifier = Classifier(bundle)
    recorded = classifier.card.training.get("split", {})
    split = SplitConfig(
        seed=recorded.get("seed", 42), fractions=tuple(recorded.get("fractions", (0.8, 0.1, 0.1)))
    )
    ham = split_by_group(load_dataset(data / "ham10000"), split)
    refused = lambda images: float(np.mean([classifier.classify(image).abstained for image in images]))  # noqa: E731
    result = {}
    for name in ("val", "test"):
        paths = ham.loc[ham["split"] == name, "path"]
        result[f"ham10000_{name}_answered"] = 1.0 - refused(paths)
    msid = load_dataset(data / "msid")
    result["msid_refused"] = refused(msid["path"])
    synthetic = [image for images in synthetic_images(20).values() for image in images]
    result["synthetic_refused"] = refused(synthetic)
    result["n"] = {
        "ham10000_val": int((ham["split"] == "val").sum()),
        "ham10000_test": int((ham["split"] == "test").sum()),
        "msid": len(msid),
        "synthetic": len(synthetic),
    }
    return result


def gradcam_share(reference: Path, bundle: Path, data: Path) -> dict:
    import pandas as pd

    from edge.bundle import load_bundle
    from edge.preprocess import load_image, normalize
    from models.explain import gradcam, lesion_mass_share, load_reference

    card = load_bundle(bundle).card
    model = load_reference(reference)
    root = data / "ham10000-fullres-sample"
    labels = pd.read_csv(root / "labels.csv")
    shares, areas = [], []
    for row in labels.itertuples():
        pixels = load_image(root / "images" / f"{row.image_id}.jpg", card.input)
        mask = load_image(root / "masks" / f"{row.image_id}_expert.png", card.input)[..., 0] > 127
        heat = gradcam(model, normalize(pixels, card.input), card.labels.index(row.dx))
        if heat.sum() > 0:
            shares.append(lesion_mass_share(heat, mask))
            areas.append(float(mask.mean()))
    shares, areas = np.array(shares), np.array(areas)
    return {
        "images": len(shares),
        "heat_inside_lesion": float(shares.mean()),
        "lesion_area": float(areas.mean()),
        "images_with_more_heat_than_area": float(np.mean(shares > areas)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--reference", type=Path, help="float .keras model for Grad-CAM")
    parser.add_argument("--data", type=Path, default=SHARED, help="folder holding ham10000/, msid/, ...")
    args = parser.parse_args()
    started = time.perf_counter()
    report = {"abstain": abstain_rates(args.bundle, args.data)}
    if args.reference:
        report["gradcam"] = gradcam_share(args.reference, args.bundle, args.data)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
