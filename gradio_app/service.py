"""The demo's event handlers: classify an upload, explain the answer, offer a better-fitting model.

:class:`Service` holds the served models; :func:`gradio_app.app.build_demo` wires its methods to the
page's events (``/classify``, ``/analyse``, ``/explain`` and the page's private steps)::

    >>> service = Service(load_models(["models/pretrained/ham10000"]), AppConfig())
    >>> service.classify({"path": "spot.jpg", "orig_name": "spot.jpg"}, None)["top"]
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import gradio as gr
import numpy as np

from edge.errors import ImageError
from edge.preprocess import load_image
from gradio_app import photo_check, tasks, texts
from gradio_app.bundles import Model
from gradio_app.server import AppConfig
from gradio_app.uploads import display_name, friendly_message, upload_source

log = logging.getLogger(__name__)


class Service:
    """The event handlers of one demo. Stateless apart from the models (Classifier is thread-safe)."""

    def __init__(self, models: dict[str, Model], config: AppConfig) -> None:
        self.models = models
        self.config = config
        self.default = next(iter(models))
        self._references: dict[str, Any] = {}
        self._reference_lock = threading.Lock()

    def classify(self, upload: dict[str, Any] | None, model_name: str | None) -> dict[str, Any]:
        """``/classify``: the Prediction dict, or a friendly ``gr.Error`` for a bad upload."""
        if upload is None:
            raise gr.Error(texts.NO_IMAGE, print_exception=False)
        try:
            _, prediction, _ = self._run(upload, model_name)
        except ImageError as error:
            raise gr.Error(friendly_message(error, upload), print_exception=False) from error
        return prediction.to_dict()

    def analyse(self, upload: dict[str, Any] | None, model_name: str | None) -> tuple[Any, ...]:
        """``/analyse``: (label, risk html, advice markdown, crop the model saw, prediction dict)."""
        if upload is None:
            return None, "", texts.NO_IMAGE, None, None
        try:
            model, prediction, pixels = self._run(upload, model_name)
        except ImageError as error:
            message = friendly_message(error, upload)
            log.info("refused an upload: %s", message)
            return None, "", texts.bad_upload(message), None, {"error": message}
        result = prediction.to_dict()
        if prediction.abstained:
            # No ranked classes here: a bar chart would read as a confident answer.
            return texts.CANT_TELL_LABEL, "", self._cant_tell(model, pixels), pixels, result
        scores = {category.display_name: float(category.score) for category in prediction.categories}
        return (
            scores,
            texts.risk_html(prediction.malignant_probability, model.card),
            texts.recommendation(prediction, model.card),
            pixels,
            result,
        )

    def analyse_again(self, upload: dict[str, Any] | None, model_name: str | None) -> tuple[Any, ...]:
        """The photo on the page answered by a newly chosen model; with no photo the page stays as it is.

        A photo uploaded while the model switched is answered by its own event, which may finish first:
        the switch's answer for the empty page would then blank it (as a browser test on a loaded
        machine showed).
        """
        if upload is None:
            return tuple(gr.skip() for _ in self.analyse(None, model_name))  # one per part of an answer
        return self.analyse(upload, model_name)

    def _cant_tell(self, model: Model, pixels: np.ndarray) -> str:
        """The "I can't tell" text in the model's task words: what was wrong, and a better-fitting model."""
        card = model.card
        unlike = photo_check.refused_by_pixel_check(pixels, card)
        problems = photo_check.photo_problems(pixels, card.abstain["pixel_check"]) if unlike else ()
        cards = {name: served.card for name, served in self.models.items()}
        better = photo_check.better_fit(pixels, model.name, cards)
        return texts.cant_tell(
            card,
            unlike_training=unlike,
            problems=problems,
            better=cards[better] if better else None,
            better_menu=self.models[better].title if better else "",
        )

    def explain(
        self, pixels: np.ndarray | None, result: dict[str, Any] | None, model_name: str | None, wanted: bool
    ) -> tuple[Any, Any]:
        """``/explain``: the Grad-CAM overlay for the top finding, hidden when unavailable."""
        hidden = (gr.update(value=None, visible=False), gr.update(visible=False))
        model = self._model(model_name)
        if (
            not wanted
            or pixels is None
            or not result
            or result.get("abstained")
            or not result.get("categories")
            or model.reference is None
        ):
            return hidden
        top = result["categories"][0]["label"]
        try:
            reference = self._reference(model)
            if reference is None:
                return hidden
            from models.explain import gradcam_overlay

            image = gradcam_overlay(
                reference,
                np.asarray(pixels, dtype=np.uint8),
                model.card.labels.index(top),
                model.classifier.input_spec,
            )
        except Exception:  # noqa: BLE001 - an explanation is optional; the answer already went out
            log.exception("Grad-CAM overlay failed for %s; hiding it", model.reference)
            return hidden
        return gr.update(value=image, visible=True), gr.update(visible=True)

    def _reference(self, model: Model) -> Any:
        """The model's float reference, loaded once (TensorFlow is imported on first use); None if unusable."""
        with self._reference_lock:
            if model.name not in self._references:
                try:
                    from models.explain import load_reference

                    self._references[model.name] = load_reference(model.reference)
                except ImportError as error:
                    # TensorFlow or models.explain is not installed here: no overlays, the demo still works.
                    log.warning("explanations are off: cannot import the Grad-CAM code (%s)", error)
                    self._references[model.name] = None
            return self._references[model.name]

    def select_model(self, model_name: str) -> tuple[Any, Any]:
        """Shows the chosen model's card and whether it can explain itself."""
        model = self._model(model_name)
        explains = self.config.explain and model.reference is not None
        return texts.card_markdown(model.card), gr.update(visible=explains)

    def offer(self, pixels: np.ndarray | None, result: dict[str, Any] | None, model_name: str | None) -> Any:
        """The button that offers the served model whose training photos this refused photo resembles."""
        target = self._better_model(pixels, result, model_name)
        if target is None:
            return gr.update(visible=False)
        return gr.update(visible=True, value=tasks.task_texts(self.models[target].card).switch_label)

    def switch(self, pixels: np.ndarray | None, result: dict[str, Any] | None, model_name: str | None) -> Any:
        """Selects the offered model in the menu (which answers the photo again)."""
        target = self._better_model(pixels, result, model_name)
        return gr.update() if target is None else gr.update(value=target)

    def _better_model(
        self, pixels: np.ndarray | None, result: dict[str, Any] | None, model_name: str | None
    ) -> str | None:
        if pixels is None or not result or not result.get("abstained"):
            return None
        cards = {name: model.card for name, model in self.models.items()}
        return photo_check.better_fit(np.asarray(pixels, dtype=np.uint8), self._model(model_name).name, cards)

    def _model(self, name: str | None) -> Model:
        if not name:
            return self.models[self.default]
        if name not in self.models:
            raise gr.Error(
                f"Unknown model {name!r}; choose one of {', '.join(self.models)}", print_exception=False
            )
        return self.models[name]

    def _run(self, upload: dict[str, Any], model_name: str | None) -> tuple[Model, Any, np.ndarray]:
        model = self._model(model_name)
        spec = model.classifier.input_spec
        # The same load_image the Classifier calls, with the server's tighter pixel limit; the pixels are
        # identical, and they are both what the model sees and the preview the patient sees.
        spec = dataclasses.replace(spec, max_pixels=min(spec.max_pixels, self.config.max_pixels))
        start = time.perf_counter()
        pixels = load_image(upload_source(upload), spec)
        classifier = model.classifier
        # The patient's file name, not the server's temporary path, is the prediction's source.
        prediction = classifier.predict_pixels(
            pixels, classifier.probabilities_from_pixels(pixels), source=display_name(upload)
        )
        log.debug("classified with %s in %.1f ms", model.name, 1000 * (time.perf_counter() - start))
        return model, prediction, pixels
