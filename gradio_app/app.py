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

import base64
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Gradio reads this when a Blocks is created and when it launches; set it before gradio is imported so
# that no telemetry or version check ever leaves the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pydantic  # noqa: E402
from gradio.exceptions import InvalidPathError  # noqa: E402
from gradio.utils import get_upload_folder, is_in_or_equal  # noqa: E402

from edge.bundle import REFERENCE  # noqa: E402
from edge.card import CARD_FILE, ModelCard  # noqa: E402
from edge.errors import ImageError  # noqa: E402
from edge import preprocess  # noqa: E402
from edge.preprocess import load_image  # noqa: E402
from gradio_app import photo_check, tasks, texts  # noqa: E402

logger = logging.getLogger(__name__)

TITLE = "Skin spot check"


@dataclass(frozen=True)
class AppConfig:
    """Limits and switches of the demo server.

    Attributes:
        max_file_size: Largest upload Gradio accepts (Gradio's size syntax, e.g. ``"20mb"``).
        max_pixels: Largest decoded image (width*height); protects the server's memory against
            decompression bombs. Applied on top of the bundle's own limit.
        concurrency_limit: Requests processed at once; decoding runs in parallel, calls into one
            interpreter are serialised by the Classifier (a TFLite interpreter is not thread-safe).
        max_queue_size: Requests waiting beyond that; more are refused with "queue full".
        delete_cache: ``(every_seconds, older_than_seconds)``: how often Gradio sweeps its cache, and the
            age at which uploads, crop previews and overlays are deleted. Uploads are stored by content
            hash and shared by identical requests (and the page shows them), so they are not deleted
            inside a request.
        explain: Offer the Grad-CAM overlay when a bundle has a float reference.
        max_decode_bytes: Memory the server may spend decoding uploads at once, all requests together
            (see ``edge.preprocess.DecodeBudget``); None: what one ``max_pixels`` RGBA PNG needs (305 MiB
            for 40 MP), so the largest upload still decodes and 8 large uploads at once take turns
            instead of adding up. Applied by :func:`configure_process`.
    """

    max_file_size: str = "20mb"
    max_pixels: int = 40_000_000
    concurrency_limit: int = 4
    max_queue_size: int = 256
    delete_cache: tuple[int, int] = (60, 120)
    explain: bool = True
    max_decode_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.concurrency_limit < 1 or self.max_queue_size < 1:
            raise ValueError(f"max_pixels, concurrency_limit and max_queue_size must be positive, got {self}")
        if self.max_decode_bytes is not None and self.max_decode_bytes < 1:
            raise ValueError(f"max_decode_bytes must be positive or None, got {self.max_decode_bytes}")

    @property
    def decode_budget_bytes(self) -> int:
        """``max_decode_bytes``, or what decoding one ``max_pixels`` RGBA image needs."""
        if self.max_decode_bytes is not None:
            return self.max_decode_bytes
        return preprocess.decode_bytes("RGBA", (self.max_pixels, 1), reduced=True)


@dataclass(frozen=True)
class Model:
    """One installed bundle as the demo serves it.

    Attributes:
        name: Key in the model menu and the ``/classify`` API (the bundle folder's name).
        classifier: The runtime, an ``edge.classifier.Classifier`` opened on a bundle.
    """

    name: str
    classifier: Any

    @property
    def card(self) -> ModelCard:
        return self.classifier.card

    @property
    def reference(self) -> Path | None:
        """The float reference model (``reference.keras``) if the bundle ships one."""
        bundle = self.classifier.bundle
        if bundle is None or REFERENCE not in self.card.files:
            return None
        return bundle.path(REFERENCE)

    @property
    def title(self) -> str:
        """The model menu entry: the task's short label (a phone shows about 35 characters)."""
        return tasks.menu_label(self.card, self.name)


def find_bundles(root: str | os.PathLike) -> list[Path]:
    """Bundle folders directly under ``root`` (or ``root`` itself), sorted by name.

    A bundle is a folder holding a ``model_card.json``.
    """
    root = Path(root)
    if (root / CARD_FILE).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(child for child in root.iterdir() if (child / CARD_FILE).is_file())


def load_models(folders: Sequence[str | os.PathLike], *, variant: str | None = None,
                num_threads: int | None = None) -> dict[str, Model]:
    """Opens every bundle in ``folders`` with ``edge.classifier.Classifier``, keyed by folder name.

    Raises:
        BundleError: A bundle is missing, inconsistent or fails its checksums.
        ValueError: Two bundles share a folder name, or ``folders`` is empty.
    """
    from edge.classifier import Classifier

    if not folders:
        raise ValueError("no bundle folders given; pass at least one folder holding model_card.json")
    models: dict[str, Model] = {}
    for folder in map(Path, folders):
        if folder.name in models:
            raise ValueError(f"two bundles are named {folder.name!r} ({folder}); rename one folder")
        classifier = Classifier(folder, variant=variant, num_threads=num_threads)
        models[folder.name] = Model(folder.name, classifier)
    return models


def build_demo(models: Any, config: AppConfig = AppConfig()) -> gr.Blocks:
    """The demo's page and API, with its queue configured (not launched).

    Args:
        models: A ``Classifier``, a sequence of them, a ``{name: Classifier}`` mapping, or
            :class:`Model` objects; the first is the default.
        config: Server limits.
    """
    served = _as_models(models)
    enable_heic()
    service = _Service(served, config)
    first = next(iter(served.values()))
    choices = _menu_choices(served)

    with _Blocks(title=TITLE, analytics_enabled=False, delete_cache=config.delete_cache) as demo:
        gr.Markdown(f"# {TITLE}\nA research demo that compares a photo of your skin with the photos its "
                    "models learned from.", elem_id="intro")
        gr.Markdown(texts.DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("Check a spot", id="check"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        model_menu = gr.Dropdown(choices=choices, value=first.name, label="Model",
                                                 visible=len(served) > 1, interactive=True)
                        photo = gr.Image(label="Your photo", sources=["upload", "webcam", "clipboard"],
                                         type="filepath", image_mode=None, height=360,
                                         elem_id="photo")
                        want_overlay = gr.Checkbox(value=config.explain, label="Show where the model looked",
                                                   visible=config.explain and first.reference is not None)
                        gr.Markdown(texts.PRIVACY_NOTE, elem_classes=["note"])
                    with gr.Column(scale=6, elem_id="answer"):
                        # The headline is the risk band and what to do; findings follow as "most similar
                        # to", without the Label's large heading, which read as a diagnosis.
                        risk = gr.HTML(elem_id="risk")
                        # Above the advice, so that on a phone the offer is on screen with "I can't tell".
                        switch = gr.Button(visible=False, variant="primary", size="md", elem_id="switch-model")
                        advice = gr.Markdown(texts.NO_IMAGE, elem_id="advice")
                        label = gr.Label(label=texts.FINDINGS_LABEL, num_top_classes=5, show_heading=False,
                                         elem_id="findings")
                        with gr.Row():
                            crop = gr.Image(label="What the model sees", type="numpy", format="png",
                                            interactive=False, height=200, elem_id="crop")
                            overlay = gr.Image(label="Where the model looked", type="numpy", format="png",
                                               interactive=False, height=200, visible=False,
                                               elem_id="overlay")
                        overlay_note = gr.Markdown(texts.EXPLANATION_NOTE, visible=False,
                                                   elem_classes=["note"])
                        with gr.Accordion("Raw result (JSON)", open=False):
                            raw = gr.JSON(label="Prediction")
            with gr.Tab("About the model", id="model"):
                card_view = gr.Markdown(texts.card_markdown(first.card), elem_id="card")
        classify_trigger = gr.Button(visible=False)

        analyse = {"fn": service.analyse, "inputs": [photo, model_menu],
                   "outputs": [label, risk, advice, crop, raw], "preprocess": False, "concurrency_id": "classify"}
        # A second step, so the answer shows at once and the slower overlay follows; one at a time,
        # because the Keras reference model is not meant to be called from several threads.
        explain = {"fn": service.explain, "inputs": [crop, raw, model_menu, want_overlay],
                   "outputs": [overlay, overlay_note], "concurrency_limit": 1, "concurrency_id": "explain",
                   "show_progress": "minimal"}
        explains = config.explain and any(model.reference is not None for model in served.values())

        def follow_up(answered: Any, again: bool) -> None:
            """What follows every answer: bring it into view, offer a better-fitting model, explain."""
            suffix = "_again" if again else ""
            # The scroll follows the offer, so that a button it shows is on screen too.
            offered = answered.then(service.offer, inputs=[crop, raw, model_menu], outputs=switch,
                                    api_name=f"offer_model{suffix}", api_visibility="private")
            offered.then(None, js=SCROLL_TO_ANSWER)
            if explains:
                answered.then(api_name=f"explain{suffix}", api_visibility="private" if again else "public",
                              **explain)

        follow_up(photo.change(api_name="analyse", trigger_mode="always_last", **analyse), again=False)
        if explains:
            want_overlay.change(api_name="toggle_explanation", api_visibility="private", **explain)
        # Choosing another model shows its card and answers the same photo again (a patient who switched
        # to the model the page offered should not have to upload the photo twice).
        selected = model_menu.change(service.select_model, inputs=model_menu,
                                     outputs=[card_view, want_overlay], api_name="select_model",
                                     api_visibility="private")
        follow_up(selected.then(api_name="analyse_again", api_visibility="private", **analyse), again=True)
        switch.click(service.switch, inputs=[crop, raw, model_menu], outputs=model_menu,
                     api_name="switch_model", api_visibility="private")
        classify_trigger.click(service.classify, inputs=[photo, model_menu], outputs=raw,
                               api_name="classify", preprocess=False, concurrency_id="classify")
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return demo


def launch_options(config: AppConfig = AppConfig()) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` that belong to the demo rather than to the host."""
    return {
        "max_file_size": config.max_file_size,
        "theme": THEME,
        "css": CSS,
        "ssr_mode": False,  # server-side rendering starts a Node server; the page needs none
        "enable_monitoring": False,
        "footer_links": ["api"],
        "show_error": False,  # our own messages are friendlier than stack traces
    }


# glibc's mallopt parameter: allocations at least this large get their own mapping.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 * 2**20


def configure_process(config: AppConfig = AppConfig()) -> None:
    """Process-wide memory limits for the process that serves the demo; call once, before launching.

    Sets ``edge.preprocess.DECODE_BUDGET`` to ``config.decode_budget_bytes``: the default budget (512
    MiB, sized for a Raspberry Pi decoding alone) let three 40 MP PNGs decode at once next to Gradio.
    And on glibc, pins the mmap threshold: glibc raises it after the first large free, so the next
    decoded images land in its heaps and their memory stays with the process after the answer
    (505 MB six minutes after 8 large uploads); mapped blocks go back to the system when freed.
    """
    preprocess.DECODE_BUDGET = preprocess.DecodeBudget(config.decode_budget_bytes)
    _pin_mmap_threshold()


def _pin_mmap_threshold() -> None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES):
        logger.info("could not pin the allocator's mmap threshold (not glibc); memory freed after large "
                    "uploads may stay with the process")


def enable_heic() -> bool:
    """Lets Pillow (and so ``load_image``) open iPhone HEIC/HEIF photos; False when pillow-heif is absent."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        logger.info("pillow-heif is not installed; HEIC photos will be refused (pip install pillow-heif)")
        return False
    register_heif_opener()
    return True


class _Blocks(gr.Blocks):
    """``gr.Blocks`` that tells an API caller whose image input is not an upload what to send instead.

    Gradio checks file inputs before any handler runs, and with ``show_error=False`` its refusals (a
    path outside its upload folder, a string instead of a file dict) reach the caller as
    ``{"error": null}``. And a file dict without Gradio's ``meta`` skips its upload-folder check, which
    would let a caller have any image on the server read and shown back; this refuses that too.
    """

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        explicit_call = kwargs.get("explicit_call", args[1] if len(args) > 1 else False)
        images = [(block, value) for block, value in zip(block_fn.inputs, inputs)
                  if isinstance(block, gr.Image)]
        if not explicit_call:  # a call from the server's own code may pass its own files, as in Gradio
            for block, value in images:
                path = value.get("path") if isinstance(value, dict) else None
                if path is not None and not (isinstance(path, str)
                                             and is_in_or_equal(path, get_upload_folder())):
                    received = f"the path {path!r}, which is not an upload on this server"
                    raise gr.Error(texts.not_an_upload(_input_label(block), received), print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except (InvalidPathError, pydantic.ValidationError) as error:
            refused = _refused_image(images, error)
            if refused is None:
                raise
            block, value = refused
            raise gr.Error(texts.not_an_upload(_input_label(block), _describe(value)),
                           print_exception=False) from error


def _refused_image(images: list[tuple[Any, Any]], error: Exception) -> tuple[Any, Any] | None:
    """The image input (component, value) that Gradio's ``error`` is about, or None if it is none of them."""
    if isinstance(error, pydantic.ValidationError):
        # Pydantic names the model that failed: the component's data model (ImageData for gr.Image).
        images = [(block, value) for block, value in images
                  if getattr(getattr(block, "data_model", None), "__name__", None) == error.title]
    return images[0] if images else None


def _input_label(block: Any) -> str:
    return f"The input {block.label!r}" if block.label else "The image input"


def _describe(value: Any) -> str:
    """What a caller sent, short, for an error message."""
    if isinstance(value, str):
        return f"the string {value[:200]!r}"
    if isinstance(value, dict):
        return f"the path {value['path']!r}" if "path" in value else f"a dict with keys {sorted(value)[:10]}"
    return f"{type(value).__name__} {str(value)[:80]!r}"


class _Service:
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
            raise gr.Error(_friendly(error, upload), print_exception=False) from error
        return prediction.to_dict()

    def analyse(self, upload: dict[str, Any] | None, model_name: str | None) -> tuple[Any, ...]:
        """``/analyse``: (label, risk html, advice markdown, crop the model saw, prediction dict)."""
        if upload is None:
            return None, "", texts.NO_IMAGE, None, None
        try:
            model, prediction, pixels = self._run(upload, model_name)
        except ImageError as error:
            message = _friendly(error, upload)
            logger.info("refused an upload: %s", message)
            return None, "", texts.bad_upload(message), None, {"error": message}
        result = prediction.to_dict()
        if prediction.abstained:
            # No ranked classes here: a bar chart would read as a confident answer.
            return texts.CANT_TELL_LABEL, "", self._cant_tell(model, pixels), pixels, result
        scores = {category.display_name: float(category.score) for category in prediction.categories}
        return (scores, texts.risk_html(prediction.malignant_probability, model.card),
                texts.recommendation(prediction, model.card), pixels, result)

    def _cant_tell(self, model: Model, pixels: np.ndarray) -> str:
        """The "I can't tell" text in the model's task words: what was wrong, and a better-fitting model."""
        card = model.card
        unlike = photo_check.refused_by_pixel_check(pixels, card)
        problems = photo_check.photo_problems(pixels, card.abstain["pixel_check"]) if unlike else ()
        cards = {name: served.card for name, served in self.models.items()}
        better = photo_check.better_fit(pixels, model.name, cards)
        return texts.cant_tell(card, unlike_training=unlike, problems=problems,
                               better=cards[better] if better else None,
                               better_menu=self.models[better].title if better else "")

    def explain(self, pixels: np.ndarray | None, result: dict[str, Any] | None, model_name: str | None,
                wanted: bool) -> tuple[Any, Any]:
        """``/explain``: the Grad-CAM overlay for the top finding, hidden when unavailable."""
        hidden = (gr.update(value=None, visible=False), gr.update(visible=False))
        model = self._model(model_name)
        if (not wanted or pixels is None or not result or result.get("abstained")
                or not result.get("categories") or model.reference is None):
            return hidden
        top = result["categories"][0]["label"]
        try:
            reference = self._reference(model)
            if reference is None:
                return hidden
            from models.explain import gradcam_overlay

            image = gradcam_overlay(reference, np.asarray(pixels, dtype=np.uint8), model.card.labels.index(top),
                                    model.classifier.input_spec)
        except Exception:  # noqa: BLE001 - an explanation is optional; the answer already went out
            logger.exception("Grad-CAM overlay failed for %s; hiding it", model.reference)
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
                    logger.warning("explanations are off: cannot import the Grad-CAM code (%s)", error)
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

    def _better_model(self, pixels: np.ndarray | None, result: dict[str, Any] | None,
                      model_name: str | None) -> str | None:
        if pixels is None or not result or not result.get("abstained"):
            return None
        cards = {name: model.card for name, model in self.models.items()}
        return photo_check.better_fit(np.asarray(pixels, dtype=np.uint8), self._model(model_name).name, cards)

    def _model(self, name: str | None) -> Model:
        if not name:
            return self.models[self.default]
        if name not in self.models:
            raise gr.Error(f"Unknown model {name!r}; choose one of {', '.join(self.models)}",
                           print_exception=False)
        return self.models[name]

    def _run(self, upload: dict[str, Any], model_name: str | None) -> tuple[Model, Any, np.ndarray]:
        model = self._model(model_name)
        spec = model.classifier.input_spec
        # The same load_image the Classifier calls, with the server's tighter pixel limit; the pixels are
        # identical, and they are both what the model sees and the preview the patient sees.
        spec = dataclasses.replace(spec, max_pixels=min(spec.max_pixels, self.config.max_pixels))
        start = time.perf_counter()
        pixels = load_image(_source(upload), spec)
        classifier = model.classifier
        # The patient's file name, not the server's temporary path, is the prediction's source.
        prediction = classifier.predict_pixels(pixels, classifier.probabilities_from_pixels(pixels),
                                               source=_display_name(upload))
        logger.debug("classified with %s in %.1f ms", model.name, 1000 * (time.perf_counter() - start))
        return model, prediction, pixels


def _menu_choices(models: dict[str, Model]) -> list[tuple[str, str]]:
    """(label, name) pairs for the model menu; two bundles of one task also show their folder names."""
    titles = [model.title for model in models.values()]
    return [(model.title if titles.count(model.title) == 1 else f"{model.title} ({name})", name)
            for name, model in models.items()]


def _as_models(models: Any) -> dict[str, Model]:
    if isinstance(models, Mapping):
        items = [item if isinstance(item, Model) else Model(str(name), item) for name, item in models.items()]
    else:
        sequence = list(models) if isinstance(models, (list, tuple)) else [models]
        items = [item if isinstance(item, Model) else Model(_default_name(item), item) for item in sequence]
    for item in items:
        if item.classifier.card is None:
            raise ValueError(f"{item.classifier.model_path} is a bare model file; the demo needs a bundle "
                             "folder (its card holds the plain-language names and the abstain rule)")
    if not items:
        raise ValueError("build_demo needs at least one classifier")
    served = {item.name: item for item in items}
    if len(served) != len(items):
        raise ValueError(f"model names must be unique, got {[item.name for item in items]}")
    return served


def _default_name(classifier: Any) -> str:
    """The bundle folder's name, as ``load_models`` keys it."""
    return classifier.bundle.folder.name


def _source(upload: dict[str, Any]) -> str | bytes:
    """The uploaded file's path, or the bytes of a ``data:`` URL (how some browsers paste images)."""
    path, url = upload.get("path"), upload.get("url") or ""
    if path:
        return path
    if url.startswith("data:") and "," in url:
        header, _, data = url.partition(",")
        try:
            return base64.b64decode(data) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(data)
        except ValueError as error:
            raise ImageError(f"{_display_name(upload)}: the pasted image data is not valid base64") from error
    raise ImageError(f"{_display_name(upload)}: the upload did not arrive; try again")


def _display_name(upload: dict[str, Any]) -> str:
    return upload.get("orig_name") or "your photo"


def _friendly(error: ImageError, upload: dict[str, Any]) -> str:
    """The ImageError's message with the server's temporary path replaced by the patient's file name."""
    message = str(error)
    path = upload.get("path")
    if path:
        message = message.replace(str(path), _display_name(upload))
    if "file not found" in message:
        message = (f"{_display_name(upload)} is no longer on the server (photos are deleted a few minutes "
                   "after their analysis); upload it again")
    return message


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
