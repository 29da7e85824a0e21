"""The shipped demo as a patient meets it, in real Chromium on a phone (390x844) and on a desktop.

After the upload the headline (risk band, then what to do) must be on the screen without the patient
scrolling, before any finding, and no finding may be the largest text of the answer. The screenshots
are the README's (``docs/images/demo-phone.png``, ``docs/images/demo-desktop.png``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gradio_app.conftest import (
    ARTIFACTS,
    CHROMIUM,
    RASH_PHOTO,
    REPO,
    TEST_SPLIT_MELANOMA,
    TIMEOUT_MS,
    shared_photo,
)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(180),
    pytest.mark.slow,  # starts Chromium and serves the shipped bundles
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
expect = sync_api.expect

DOCS_IMAGES = REPO / "docs" / "images"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}

# Largest font size (px) of visible text inside the elements matching a selector.
MAX_FONT_JS = """(selector) => Math.max(0, ...[...document.querySelectorAll(selector)].flatMap((root) =>
  [root, ...root.querySelectorAll('*')]).filter((el) => el.getClientRects().length &&
  [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()))
  .map((el) => parseFloat(getComputedStyle(el).fontSize)))"""


def open_page(browser, served, device: dict):
    context = browser.new_context(**device)
    page = context.new_page()
    page.goto(served.url, wait_until="networkidle", timeout=TIMEOUT_MS)
    return context, page


def upload(page, path: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))


def in_page_order(page, *selectors: str) -> bool:
    """Whether the elements start one below the other, measured at one instant (the page may be scrolling)."""
    return page.evaluate(
        """(selectors) => selectors
        .map((s) => document.querySelector(s).getBoundingClientRect().top)
        .every((top, i, tops) => i === 0 || tops[i - 1] < top)""",
        list(selectors),
    )


def assert_headline_in_view_before_the_findings(page) -> None:
    risk, what_to_do = page.locator("#risk .risk"), page.locator("#advice h3", has_text="What to do")
    expect(risk).to_be_in_viewport(ratio=1.0, timeout=TIMEOUT_MS)
    expect(what_to_do).to_be_in_viewport(timeout=TIMEOUT_MS)
    expect(page.locator("#advice p").first).to_be_in_viewport()
    assert in_page_order(page, "#risk", "#advice", "#findings")
    # "Melanoma" in big letters reads as a diagnosis: the headline's text is larger than any finding's.
    assert page.evaluate(MAX_FONT_JS, "#findings") < page.evaluate(MAX_FONT_JS, "#risk, #advice")


def settle_and_save(page, name: str) -> None:
    page.wait_for_timeout(600)  # the smooth scroll to the answer ends before the picture is taken
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGES / name))


@pytest.mark.parametrize(
    "device, screenshot", [(PHONE, "demo-phone.png"), (DESKTOP, "demo-desktop.png")], ids=["phone", "desktop"]
)
def test_after_the_upload_the_risk_and_the_advice_are_on_screen(browser, shipped_served, device, screenshot):
    photo = shared_photo(TEST_SPLIT_MELANOMA)
    context, page = open_page(browser, shipped_served, device)
    try:
        upload(page, photo)
        expect(page.locator("#risk")).to_contain_text("Skin-cancer risk", timeout=TIMEOUT_MS)
        expect(page.locator("#advice")).to_contain_text("See a dermatologist")
        expect(page.locator("#findings")).to_contain_text("Melanoma")
        assert_headline_in_view_before_the_findings(page)
        settle_and_save(page, screenshot)
    finally:
        context.close()


def test_the_model_menu_is_not_cut_off_on_a_phone(browser, shipped_served):
    context, page = open_page(browser, shipped_served, PHONE)
    try:
        menu = page.get_by_role("combobox", name="Model")
        expect(menu).to_have_value("Moles and skin spots (7 findings)")
        width = menu.evaluate("(el) => ({scroll: el.scrollWidth, client: el.clientWidth})")
        assert width["scroll"] <= width["client"], width
        menu.click()
        option = page.get_by_role("option", name="Rashes: mpox, measles, chickenpox")
        expect(option).to_be_visible()
        assert option.evaluate("(el) => el.scrollWidth <= el.clientWidth")
    finally:
        context.close()


def test_a_rash_photo_is_refused_in_plain_words_and_the_rash_model_answers_it(browser, shipped_served):
    photo = shared_photo(RASH_PHOTO)
    context, page = open_page(browser, shipped_served, PHONE)
    try:
        upload(page, photo)
        advice = page.locator("#advice")
        expect(advice).to_contain_text("I can't tell from this photo", timeout=TIMEOUT_MS)
        expect(advice).not_to_contain_text("dermatoscope")
        expect(advice).not_to_contain_text("units")
        expect(advice.locator("h3").first).to_be_in_viewport(timeout=TIMEOUT_MS)
        switch = page.locator("#switch-model")
        expect(switch).to_have_text("Ask the rash model instead", timeout=TIMEOUT_MS)
        expect(switch).to_be_in_viewport(ratio=1.0)  # the offer is on screen with "I can't tell"
        assert in_page_order(page, "#switch-model", "#advice")
        page.wait_for_timeout(600)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-phone-cant-tell.png"))

        switch.click()
        expect(page.get_by_role("combobox", name="Model")).to_have_value("Rashes: mpox, measles, chickenpox")
        expect(page.locator("#risk")).to_contain_text("tells rashes apart", timeout=TIMEOUT_MS)
        expect(advice).not_to_contain_text("I can't tell")
        expect(advice.locator("h3", has_text="What to do")).to_be_in_viewport(timeout=TIMEOUT_MS)
        expect(page.locator("#findings")).to_contain_text("%")
        expect(switch).to_be_hidden()
        page.wait_for_timeout(600)
        page.screenshot(path=str(ARTIFACTS / "demo-phone-rash-model.png"))
    finally:
        context.close()
