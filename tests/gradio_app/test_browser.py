"""The demo in a real browser: Debian's Chromium driven by Playwright uploads photos like a patient would.

Screenshots land in ``test-artifacts/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gradio_app.conftest import ARTIFACTS, CHROMIUM, TIMEOUT_MS

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(180),
    pytest.mark.slow,  # starts Chromium: ~15 s on top of the shared server
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(served.url, wait_until="networkidle", timeout=TIMEOUT_MS)
    yield page
    context.close()


def upload(page, path: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))


def test_patient_uploads_a_photo_and_reads_the_answer(page, photos):
    sync_api.expect(page.locator("#disclaimer")).to_contain_text("This is not a diagnosis")

    upload(page, photos["red"])

    findings = page.locator("#findings")
    sync_api.expect(findings).to_contain_text("Reddish test lesion", timeout=TIMEOUT_MS)
    sync_api.expect(findings).to_contain_text("%")
    sync_api.expect(page.locator("#risk")).to_contain_text("Skin-cancer risk: High")
    sync_api.expect(page.locator("#advice")).to_contain_text("See a dermatologist as soon as you can")
    sync_api.expect(page.locator("#crop img")).to_be_visible()
    # The tiny bundle ships its float reference, so the Grad-CAM overlay follows the answer.
    sync_api.expect(page.locator("#overlay img")).to_be_visible(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gradio_app_result.png"), full_page=True)


def test_bad_upload_shows_a_friendly_message_and_the_page_keeps_working(page, bad_uploads, photos):
    upload(page, bad_uploads["corrupt_jpeg"])
    advice = page.locator("#advice")
    sync_api.expect(advice).to_contain_text("I could not read this file", timeout=TIMEOUT_MS)
    sync_api.expect(advice).to_contain_text("corrupt.jpg")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gradio_app_bad_upload.png"), full_page=True)

    upload(page, photos["green"])
    sync_api.expect(page.locator("#findings")).to_contain_text("Greenish test lesion", timeout=TIMEOUT_MS)
    sync_api.expect(page.locator("#risk")).to_contain_text("Low")


def test_unsure_model_says_it_cannot_tell(page, photos):
    menu = page.get_by_role("combobox", name="Model")
    menu.click()
    page.get_by_role("option", name="tiny-unsure", exact=False).click()
    upload(page, photos["red"])

    sync_api.expect(page.locator("#advice")).to_contain_text(
        "I can't tell from this photo", timeout=TIMEOUT_MS
    )
    findings = page.locator("#findings")
    sync_api.expect(findings).to_contain_text("I can't tell")
    sync_api.expect(findings).not_to_contain_text("Reddish test lesion")
    sync_api.expect(findings).not_to_contain_text("%")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gradio_app_cant_tell.png"), full_page=True)


def test_model_tab_shows_the_card(page):
    page.get_by_role("tab", name="About the model").click()
    card = page.locator("#card")
    sync_api.expect(card).to_contain_text("Intended use", timeout=TIMEOUT_MS)
    sync_api.expect(card).to_contain_text("Reddish test lesion")
    sync_api.expect(card).to_contain_text("Limitations")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gradio_app_model_card.png"), full_page=True)


def test_choosing_another_model_answers_the_photo_on_the_page_again(page, photos):
    upload(page, photos["red"])
    sync_api.expect(page.locator("#findings")).to_contain_text("Reddish test lesion", timeout=TIMEOUT_MS)

    page.get_by_role("combobox", name="Model").click()
    page.get_by_role("option", name="tiny-unsure", exact=False).click()

    sync_api.expect(page.locator("#advice")).to_contain_text(
        "I can't tell from this photo", timeout=TIMEOUT_MS
    )
    sync_api.expect(page.locator("#findings")).not_to_contain_text("Reddish test lesion")
