"""The bundles the demo serves: finding them, opening them, and naming them in the model menu.

No Gradio here: ``python -m gradio_app`` finds and opens the bundles, :func:`gradio_app.app.build_demo`
takes what it opened::

    >>> models = load_models(find_bundles("models/pretrained"))
    >>> [model.title for model in models.values()]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.bundle import REFERENCE
from edge.card import CARD_FILE, ModelCard
from gradio_app import tasks


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


def load_models(
    folders: Sequence[str | os.PathLike], *, variant: str | None = None, num_threads: int | None = None
) -> dict[str, Model]:
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


def menu_choices(models: dict[str, Model]) -> list[tuple[str, str]]:
    """(label, name) pairs for the model menu; two bundles of one task also show their folder names."""
    titles = [model.title for model in models.values()]
    return [
        (model.title if titles.count(model.title) == 1 else f"{model.title} ({name})", name)
        for name, model in models.items()
    ]


def as_models(models: Any) -> dict[str, Model]:
    """``build_demo``'s ``models`` argument as ``{name: Model}``, in order; the first is the default.

    Raises:
        ValueError: No model, two with one name, or a bare model file (the demo needs a bundle's card).
    """
    if isinstance(models, Mapping):
        items = [item if isinstance(item, Model) else Model(str(name), item) for name, item in models.items()]
    else:
        sequence = list(models) if isinstance(models, (list, tuple)) else [models]
        items = [item if isinstance(item, Model) else Model(_default_name(item), item) for item in sequence]
    for item in items:
        if item.classifier.card is None:
            raise ValueError(
                f"{item.classifier.model_path} is a bare model file; the demo needs a bundle "
                "folder (its card holds the plain-language names and the abstain rule)"
            )
    if not items:
        raise ValueError("build_demo needs at least one classifier")
    served = {item.name: item for item in items}
    if len(served) != len(items):
        raise ValueError(f"model names must be unique, got {[item.name for item in items]}")
    return served


def _default_name(classifier: Any) -> str:
    """The bundle folder's name, as ``load_models`` keys it."""
    return classifier.bundle.folder.name
