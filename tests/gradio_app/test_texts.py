"""What the demo says: risk bands, advice, the model card page, and the entry point's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.card import ClassInfo, ModelCard
from edge.tasks import HAM10000_CLASSES, MSID_CLASSES
from edge.classifier import Category, Prediction
from edge.preprocess import InputSpec
from gradio_app import texts

HAM_CARD = ModelCard(
    name="skinlesion-ham10000",
    version="1.0.0",
    created="2026-11-22T00:00:00+00:00",
    task="dermoscopy 7-class",
    classes=HAM10000_CLASSES,
    input=InputSpec(224, 224),
    metrics={
        "test": {
            "n": 1503,
            "accuracy": 0.8123,
            "balanced_accuracy": 0.701,
            "balanced_accuracy_interval": [0.652, 0.748],
            "macro": {"auc": 0.95},
            "malignant": {"auc": 0.91, "sensitivity": 0.8, "specificity": 0.85},
            "per_class": {"mel": {"recall": 0.6}},
            "confusion_matrix": [[1]],
        }
    },
    license="CC BY-NC 4.0 (inherits the HAM10000 terms)",
    intended_use="Research and education only.",
    limitations=("Dermoscopy images only.", "Mostly fair skin in the training data."),
    abstain={"min_confidence": 0.4},
)


def prediction(scores: dict[str, float], card: ModelCard = HAM_CARD) -> Prediction:
    names = card.display_names
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    malignant = [c.code for c in card.classes if c.malignant]
    return Prediction(
        categories=tuple(Category(code, names[code], score) for code, score in ranked),
        malignant_probability=sum(scores.get(code, 0.0) for code in malignant) if malignant else None,
        abstained=False,
        abstain_reason=None,
        source="spot.jpg",
    )


@pytest.mark.parametrize(
    "probability, band",
    [(0.0, "low"), (0.19, "low"), (0.2, "moderate"), (0.49, "moderate"), (0.5, "high"), (1.0, "high")],
)
def test_a_card_without_operating_points_gets_the_default_bands(probability, band):
    assert texts.risk_band(probability, HAM_CARD).name == band


def test_risk_band_refuses_a_probability_outside_0_1():
    with pytest.raises(ValueError, match="1.5"):
        texts.risk_band(1.5, HAM_CARD)


def test_melanoma_sends_the_patient_to_a_dermatologist_now():
    advice = texts.recommendation(prediction({"mel": 0.7, "nv": 0.3}), HAM_CARD)
    assert "**Most similar to:** Melanoma (70%)" in advice
    assert "See a dermatologist as soon as you can" in advice


def test_advice_comes_before_the_findings_and_never_calls_them_a_diagnosis():
    advice = texts.recommendation(prediction({"mel": 0.7, "nv": 0.3}), HAM_CARD)
    assert advice.startswith("### What to do")
    assert (
        advice.index("See a dermatologist")
        < advice.index("Most similar to")
        < advice.index("not a diagnosis")
    )
    assert "### Most similar" not in advice and "# Melanoma" not in advice  # no finding as a heading


def test_a_confident_mole_needs_no_urgent_visit():
    advice = texts.recommendation(prediction({"nv": 0.93, "mel": 0.04, "bkl": 0.03}), HAM_CARD)
    assert "No urgent visit needed" in advice
    assert "See a dermatologist" not in advice


def test_a_mole_with_a_high_cancer_risk_still_gets_the_urgent_advice():
    # nv is the top class, but melanoma + basal cell carcinoma add up to a high malignant probability.
    advice = texts.recommendation(prediction({"nv": 0.4, "mel": 0.35, "bcc": 0.25}), HAM_CARD)
    assert "**Most similar to:** Melanocytic nevus (mole) (40%)" in advice
    assert "usually harmless finding, but" in advice and "high (60%)" in advice
    assert "See a dermatologist as soon as you can" in advice
    assert "No urgent visit needed" not in advice


def test_unknown_malignant_class_falls_back_to_the_card_flag():
    card = ModelCard(
        name="x",
        version="1",
        created="",
        task="t",
        input=InputSpec(32, 32),
        classes=(ClassInfo("bad", "Bad thing", True), ClassInfo("ok", "Fine thing", False)),
    )
    assert texts.class_advice("bad", card).text == texts.SEE_SOON
    assert texts.class_advice("ok", card).text == texts.WATCH


def test_rash_model_has_no_cancer_risk_and_rash_specific_advice():
    card = ModelCard(
        name="msid",
        version="1",
        created="",
        task="clinical photo 4-class",
        classes=MSID_CLASSES,
        input=InputSpec(224, 224),
    )
    result = prediction({"Monkeypox": 0.8, "Normal": 0.2}, card)
    assert result.malignant_probability is None
    assert "tells rashes apart; it does not estimate a skin-cancer risk" in texts.risk_html(None, card)
    assert "phone ahead" in texts.recommendation(result, card)


def test_risk_badge_names_band_and_probability():
    badge = texts.risk_html(0.62, HAM_CARD)
    assert 'class="risk risk-high"' in badge and "<b>High</b>" in badge and "62%" in badge


def test_bad_upload_message_carries_the_reason():
    message = texts.bad_upload("holiday.png: image is 1x1 px, too small to show a lesion.")
    assert "I could not read this file" in message and "holiday.png: image is 1x1 px" in message


def test_model_card_page_shows_what_a_reviewer_needs():
    page = texts.card_markdown(HAM_CARD)
    for needed in (
        "skinlesion-ham10000 1.0.0",
        "Intended use",
        "Research and education only.",
        "Melanoma",
        "| `mel` | yes |",
        "top answer right | 81.2%",
        "images | 1,503",
        "mean AUC over findings | 0.950",
        "malignant spots flagged (sensitivity) | 80.0%",
        "balanced accuracy (mean recall per finding) | 70.1% (95% interval 65.2%–74.8%)",
        "Dermoscopy images only.",
        "CC BY-NC 4.0",
        "when the top probability is below 40%",
        "224x224",
    ):
        assert needed in page, needed
    assert "confusion" not in page and "recall | 0.6" not in page


def test_find_bundles_lists_folders_with_a_card(tmp_path, tiny_bundle):
    from gradio_app.app import find_bundles

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model_card.json").write_text("{}")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model_card.json").write_text("{}")
    (tmp_path / "not_a_bundle").mkdir()
    assert find_bundles(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    assert find_bundles(tiny_bundle) == [tiny_bundle]
    assert find_bundles(tmp_path / "missing") == []


def test_entry_point_without_bundles_explains_what_to_do(tmp_path, capsys):
    from gradio_app.__main__ import main

    assert main(["--bundle", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path) in error and "model_card.json" in error and "skinlesion build" in error


def test_entry_point_refuses_a_broken_bundle(tmp_path, tiny_bundle, capsys):
    import shutil

    from gradio_app.__main__ import main

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    card = json.loads((broken / "model_card.json").read_text())
    model = broken / card["files"]["int8"]["path"]
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")  # same size, different sha256
    assert main(["--bundle", str(broken)]) == 2
    assert "sha256" in capsys.readouterr().err.lower()


def test_entry_point_serves_a_shipped_bundle_by_name(monkeypatch):
    import gradio_app.app as app
    from edge.bundle import shipped_bundles
    from gradio_app.__main__ import main

    if "msid" not in shipped_bundles():
        pytest.skip("the msid bundle is not installed under models/pretrained/")
    launched = {}

    class Demo:
        def launch(self, **options):
            launched.update(options)

    def build_demo(models, config):
        launched["models"] = list(models)
        return Demo()

    monkeypatch.setattr(app, "build_demo", build_demo)
    monkeypatch.setattr(
        app, "configure_process", lambda config: None
    )  # process-wide: not in the tests' process
    assert main(["--bundle", "msid", "--port", "7999"]) == 0  # as in the --help example
    assert launched["models"] == ["msid"] and launched["server_port"] == 7999


def test_entry_point_help_states_the_demo_defaults():
    from gradio_app.__main__ import build_parser
    from gradio_app.app import AppConfig

    concurrency = next(a for a in build_parser()._actions if a.dest == "concurrency")  # noqa: SLF001
    assert f"default: {AppConfig().concurrency_limit}," in concurrency.help


def test_the_server_decodes_one_largest_upload_at_a_time(monkeypatch):
    import gradio_app.server as server
    from edge import preprocess

    monkeypatch.setattr(preprocess, "DECODE_BUDGET", preprocess.DECODE_BUDGET)  # put back after the test
    monkeypatch.setattr(
        server, "_pin_mmap_threshold", lambda: None
    )  # process-wide: not in the tests' process
    server.configure_process(server.AppConfig())
    largest = preprocess.decode_bytes("RGBA", (7296, 5472), reduced=True)  # 40 MP, AppConfig's max_pixels
    # The largest upload still decodes; a second one waits instead of adding its pixels to the peak
    # (benchmarks/app_memory.py measures the demo's memory with 8 of them at once).
    assert largest <= preprocess.DECODE_BUDGET.limit_bytes < 2 * largest


def test_package_import_loads_no_gradio():
    import subprocess
    import sys

    code = "import sys, gradio_app, gradio_app.texts; print('gradio' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    assert out == ["False", "False"]


def test_the_app_s_task_words_come_from_the_task_table(monkeypatch):
    import dataclasses

    from edge import tasks as task_table
    from gradio_app import tasks

    assert tasks.task_texts(HAM_CARD) == task_table.task("ham10000").texts
    words = dataclasses.replace(
        task_table.task("msid").texts, key="demo", menu_label="Demo spots", match_words=("demo",)
    )
    monkeypatch.setitem(
        task_table.TASKS, "demo", dataclasses.replace(task_table.task("msid"), key="demo", texts=words)
    )
    card = dataclasses.replace(HAM_CARD, name="renamed", task="demo photos, 2 classes")
    assert tasks.menu_label(card, "folder") == "Demo spots"
