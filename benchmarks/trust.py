"""How a bundle's trust features do on real data: the abstain rule (or head) and Grad-CAM.

    python -m benchmarks.trust models/pretrained/ham10000 --reference runs/ham10000/bundle/reference.keras

Prints JSON: the share of the bundle's own HAM10000 validation/test images it answers, overall and per
class (the rule must not refuse the dangerous classes more than the rest), and of other dermoscopy (the
150 full-resolution HAM originals, the ISIC-archive images HAM10000 lacks); the share of images it
refuses that are not dermoscopy (MSID clinical photos — only the half an in-graph head did not learn
from, when it learned from MSID — synthetic noise/flat/colour images, the sample photos scikit-image
ships, extreme strips), each beside its target; and, with a float reference, the share of Grad-CAM heat
inside the expert lesion masks of the full-resolution sample.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# What the safety layer must reach (the shipped model's targets): refused shares of images that are not
# dermoscopy, and the answered shares of the bundle's own test split and of the same lesions photographed
# at 600x450 (a phone's photo is never 200x150).
TARGETS = {
    "msid_refused": 0.91,
    "synthetic_refused": 1.0,
    "natural_refused": 0.95,
    "strips_refused": 1.0,
    "ham10000_test_answered": 0.95,
    "ham10000_originals_answered": 0.95,
}
# A panorama and a banner, far past edge.preprocess.MAX_ASPECT.
STRIPS = {"10000x50": (50, 10000), "50x10000": (10000, 50)}


def refusals(classify, images: Iterable) -> list[bool]:
    """Whether each image is refused: the classifier abstains, or the runtime declines to read it."""
    from edge.errors import ImageError

    refused = []
    for image in images:
        try:
            refused.append(bool(classify(image).abstained))
        except ImageError:  # e.g. a strip: refused with a reason rather than answered
            refused.append(True)
    return refused


def refused_by_class(labels: Iterable[str], refused: Iterable[bool]) -> dict[str, dict]:
    """Per class: its images and the share of them refused."""
    labels, refused = np.asarray(list(labels)), np.asarray(list(refused), dtype=bool)
    return {
        str(label): {"n": int((labels == label).sum()), "refused": float(refused[labels == label].mean())}
        for label in sorted(set(labels.tolist()))
    }


def natural_photos() -> list[np.ndarray] | None:
    """The sample images scikit-image ships in its wheel (astronaut, coffee, a cat, rocket, ...), or None."""
    try:
        import skimage.data
    except ImportError:
        return None
    from PIL import Image

    folder = Path(skimage.data.__file__).parent
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]


def learned_from(classifier, folder: Path) -> bool:
    """Whether the classifier's abstain head learned from (the fit half of) this data set."""
    head = (classifier.card.abstain or {}).get("head") or {}
    return any(Path(source).resolve() == folder.resolve() for source in head.get("negatives", []))


def abstain_rates(bundle: Path, data: Path) -> dict:
    import pandas as pd

    from build.analysis.evaluate import images_to_evaluate
    from build.make.datasets import load_dataset
    from build.make.negatives import in_fit_half, synthetic_images
    from edge.classifier import Classifier

    classifier = Classifier(bundle)
    result, counts = {}, {}
    for name in ("val", "test"):
        # The card's own split (a card from before the duplicate-lesion merge gets its split back).
        frame = images_to_evaluate(bundle, data / "ham10000", split=name)
        refused = refusals(classifier.classify, frame["path"])
        result[f"ham10000_{name}_answered"] = 1.0 - float(np.mean(refused))
        result[f"ham10000_{name}_refused_by_class"] = refused_by_class(frame["label"], refused)
        counts[f"ham10000_{name}"] = len(frame)
    # Dermoscopy photographed or resized otherwise must be answered too: the same lesions at their
    # original 600x450, and the ISIC-archive images HAM10000 lacks.
    originals = sorted((data / "ham10000-fullres-sample" / "images").glob("*.jpg"))
    if originals:
        result["ham10000_originals_answered"] = 1.0 - float(np.mean(refusals(classifier.classify, originals)))
        counts["ham10000_originals"] = len(originals)
    isic = data / "isic-archive-9class" / "labels.csv"
    if isic.is_file():
        table = pd.read_csv(isic)
        paths = [isic.parent / p for p in table.loc[~table["in_ham10000"].astype(bool), "path"]]
        result["isic_archive_answered"] = 1.0 - float(np.mean(refusals(classifier.classify, paths)))
        counts["isic_archive"] = len(paths)
    msid = load_dataset(data / "msid")
    refused = np.asarray(refusals(classifier.classify, msid["path"]))
    # A head that learned from MSID's fit half is measured on the other half, which it never saw.
    seen = (
        np.asarray([in_fit_half(p) for p in msid["path"]])
        if learned_from(classifier, data / "msid")
        else None
    )
    if seen is None:
        result["msid_refused"] = float(refused.mean())
    else:
        result["msid_refused"] = float(refused[~seen].mean())
        result["msid_fit_half_refused"] = float(refused[seen].mean())
    synthetic = [image for images in synthetic_images(20).values() for image in images]
    result["synthetic_refused"] = float(np.mean(refusals(classifier.classify, synthetic)))
    natural = natural_photos()
    if natural is not None:
        result["natural_refused"] = float(np.mean(refusals(classifier.classify, natural)))
    strips = [np.full((*shape, 3), 128, np.uint8) for shape in STRIPS.values()]
    result["strips_refused"] = float(np.mean(refusals(classifier.classify, strips)))
    counts.update(
        msid=len(msid) if seen is None else int((~seen).sum()),
        synthetic=len(synthetic),
        natural=len(natural or []),
        strips=len(strips),
    )
    result["n"] = counts
    result["targets"] = {
        key: {"target": target, "measured": result[key], "met": result[key] >= target}
        for key, target in TARGETS.items()
        if key in result
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
