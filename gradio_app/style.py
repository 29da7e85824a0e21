"""The page's look: the theme, the CSS, and the script that brings an answer into view on a phone.

Kept apart from the layout (``gradio_app.app``) so that wording and structure changes do not mix with
colours; ``gradio_app.server.launch_options`` hands the theme and CSS to ``demo.launch``.
"""

from __future__ import annotations

import gradio as gr

# Runs in the browser after each answer: on a phone the answer column sits below the photo, about a
# screen down, so bring the headline (the risk band, else the offer of another model, else the advice)
# to the top unless it is already in the upper half of the screen. The short delay lets Gradio render
# the new values first.
SCROLL_TO_ANSWER = """
() => {
  setTimeout(() => {
    const target = [...document.querySelectorAll('#risk, #switch-model, #advice')]
      .find((el) => el.getClientRects().length && el.innerText.trim());
    if (!target) return;
    const top = target.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight / 2) target.scrollIntoView({behavior: 'smooth', block: 'start'});
  }, 150);
}
"""

THEME = gr.themes.Soft(
    primary_hue="teal",
    neutral_hue="slate",
    # System fonts: the default theme would fetch web fonts, and this demo makes no outside calls.
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)

CSS = """
.gradio-container { max-width: 1100px !important; margin: 0 auto; }
#intro h1 { margin-bottom: 0.2em; }
#disclaimer { background: #fff7e6; border: 1px solid #f0c36d; border-radius: 10px; padding: 10px 14px; }
#disclaimer p { margin: 0; color: #5c4100; }
.note p { font-size: 0.85em; color: #555; }
/* Model inputs are small (224 px, 32 px in tests): scale previews up to the box, keeping pixels crisp. */
#crop img, #overlay img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
                          padding-top: 2.4rem; box-sizing: border-box; }  /* below the block's label */
.risk { border-radius: 10px; padding: 10px 14px; margin: 4px 0; line-height: 1.5; }
.risk-title { font-size: 1.15em; }
.risk-head { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: 4px 16px; }
.risk-number { font-weight: 600; }
.risk-meaning { font-size: 0.9em; margin-top: 4px; opacity: 0.9; }
/* An abstained answer's "I can't tell" stays smaller than the advice's heading. */
#findings .output-class { font-size: 1.1rem !important; padding: 4px 0 !important; }
#switch-model { margin: 0 0 8px 0; }
#risk, #switch-model, #advice { scroll-margin-top: 12px; }  /* scrolled to, not glued to the screen edge */
.risk-low { background: #e8f6ee; border-left: 6px solid #2e9d5b; color: #174d2d; }
.risk-moderate { background: #fff4e0; border-left: 6px solid #e69b00; color: #5c3d00; }
.risk-high { background: #fde8e8; border-left: 6px solid #d43c3c; color: #6b1414; }
.risk-none { background: #eef2f7; border-left: 6px solid #7b8ba1; color: #2b3645; }
"""
