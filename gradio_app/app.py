"""The patient's web demo: a photo in, ranked findings, a risk band and plain advice out.

The demo runs exactly what ships: a bundle's TFLite model through :class:`edge.classifier.Classifier`,
fed by THE preprocessing (``edge.preprocess.load_image``). Build it with :func:`build_demo` and launch
it from ``gradio_app/__main__.py`` (``skinlesion app``)::

    >>> from edge.classifier import Classifier
    >>> demo = build_demo(Classifier("models/pretrained/ham10000"))
    >>> demo.launch(**launch_options(AppConfig()))

Events a client may call: ``/classify`` (photo, model -> the Prediction dict as JSON), ``/analyse``
(what the page shows: findings, risk badge, advice, the crop the model saw, the Prediction dict),
``/explain`` (the Grad-CAM overlay). The page's own steps (offering another model, answering again
after a model change) are private.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gradio_app import texts
from gradio_app.bundles import Model, as_models, find_bundles, load_models, menu_choices
from gradio_app.server import AppConfig, configure_process, enable_heic, launch_options
from gradio_app.service import Service
from gradio_app.style import SCROLL_TO_ANSWER
from gradio_app.uploads import CheckedBlocks

# ``python -m gradio_app``, the tests and the docs import the demo's whole API from here.
__all__ = [
    "TITLE",
    "AppConfig",
    "Model",
    "build_demo",
    "configure_process",
    "enable_heic",
    "find_bundles",
    "launch_options",
    "load_models",
]

TITLE = "Skin spot check"


def build_demo(models: Any, config: AppConfig = AppConfig()) -> gr.Blocks:
    """The demo's page and API, with its queue configured (not launched).

    Args:
        models: A ``Classifier``, a sequence of them, a ``{name: Classifier}`` mapping, or
            :class:`Model` objects; the first is the default.
        config: Server limits.
    """
    served = as_models(models)
    enable_heic()
    service = Service(served, config)
    first = next(iter(served.values()))
    choices = menu_choices(served)

    with CheckedBlocks(title=TITLE, analytics_enabled=False, delete_cache=config.delete_cache) as demo:
        gr.Markdown(
            f"# {TITLE}\nA research demo that compares a photo of your skin with the photos its "
            "models learned from.",
            elem_id="intro",
        )
        gr.Markdown(texts.DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("Check a spot", id="check"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        model_menu = gr.Dropdown(
                            choices=choices,
                            value=first.name,
                            label="Model",
                            visible=len(served) > 1,
                            interactive=True,
                        )
                        photo = gr.Image(
                            label="Your photo",
                            sources=["upload", "webcam", "clipboard"],
                            type="filepath",
                            image_mode=None,
                            height=360,
                            elem_id="photo",
                        )
                        want_overlay = gr.Checkbox(
                            value=config.explain,
                            label="Show where the model looked",
                            visible=config.explain and first.reference is not None,
                        )
                        gr.Markdown(texts.PRIVACY_NOTE, elem_classes=["note"])
                    with gr.Column(scale=6, elem_id="answer"):
                        # The headline is the risk band and what to do; findings follow as "most similar
                        # to", without the Label's large heading, which read as a diagnosis.
                        risk = gr.HTML(elem_id="risk")
                        # Above the advice, so that on a phone the offer is on screen with "I can't tell".
                        switch = gr.Button(
                            visible=False, variant="primary", size="md", elem_id="switch-model"
                        )
                        advice = gr.Markdown(texts.NO_IMAGE, elem_id="advice")
                        label = gr.Label(
                            label=texts.FINDINGS_LABEL,
                            num_top_classes=5,
                            show_heading=False,
                            elem_id="findings",
                        )
                        with gr.Row():
                            crop = gr.Image(
                                label="What the model sees",
                                type="numpy",
                                format="png",
                                interactive=False,
                                height=200,
                                elem_id="crop",
                            )
                            overlay = gr.Image(
                                label="Where the model looked",
                                type="numpy",
                                format="png",
                                interactive=False,
                                height=200,
                                visible=False,
                                elem_id="overlay",
                            )
                        overlay_note = gr.Markdown(
                            texts.EXPLANATION_NOTE, visible=False, elem_classes=["note"]
                        )
                        with gr.Accordion("Raw result (JSON)", open=False):
                            raw = gr.JSON(label="Prediction")
            with gr.Tab("About the model", id="model"):
                card_view = gr.Markdown(texts.card_markdown(first.card), elem_id="card")
        classify_trigger = gr.Button(visible=False)

        analyse = {
            "fn": service.analyse,
            "inputs": [photo, model_menu],
            "outputs": [label, risk, advice, crop, raw],
            "preprocess": False,
            "concurrency_id": "classify",
        }
        # A second step, so the answer shows at once and the slower overlay follows; one at a time,
        # because the Keras reference model is not meant to be called from several threads.
        explain = {
            "fn": service.explain,
            "inputs": [crop, raw, model_menu, want_overlay],
            "outputs": [overlay, overlay_note],
            "concurrency_limit": 1,
            "concurrency_id": "explain",
            "show_progress": "minimal",
        }
        explains = config.explain and any(model.reference is not None for model in served.values())

        def follow_up(answered: Any, again: bool) -> None:
            """What follows every answer: bring it into view, offer a better-fitting model, explain."""
            suffix = "_again" if again else ""
            # The scroll follows the offer, so that a button it shows is on screen too.
            offered = answered.then(
                service.offer,
                inputs=[crop, raw, model_menu],
                outputs=switch,
                api_name=f"offer_model{suffix}",
                api_visibility="private",
            )
            offered.then(None, js=SCROLL_TO_ANSWER)
            if explains:
                answered.then(
                    api_name=f"explain{suffix}", api_visibility="private" if again else "public", **explain
                )

        follow_up(photo.change(api_name="analyse", trigger_mode="always_last", **analyse), again=False)
        if explains:
            want_overlay.change(api_name="toggle_explanation", api_visibility="private", **explain)
        # Choosing another model shows its card and answers the same photo again (a patient who switched
        # to the model the page offered should not have to upload the photo twice).
        selected = model_menu.change(
            service.select_model,
            inputs=model_menu,
            outputs=[card_view, want_overlay],
            api_name="select_model",
            api_visibility="private",
        )
        answered_again = {**analyse, "fn": service.analyse_again}
        follow_up(
            selected.then(api_name="analyse_again", api_visibility="private", **answered_again), again=True
        )
        switch.click(
            service.switch,
            inputs=[crop, raw, model_menu],
            outputs=model_menu,
            api_name="switch_model",
            api_visibility="private",
        )
        classify_trigger.click(
            service.classify,
            inputs=[photo, model_menu],
            outputs=raw,
            api_name="classify",
            preprocess=False,
            concurrency_id="classify",
        )
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return demo
