"""The demo's words per model task: one row per task the shipped bundles serve, one fallback row.

Every sentence that depends on what a model was trained on (the menu entry, what a good photo looks like,
why a photo was refused, the note for a model without a skin-cancer risk) lives in a row of
:data:`TASKS`, so a second model never borrows the first one's words. A card picks its row by
:func:`task_texts`: its ``name`` (``skinlesion-<task>``), else a word of its ``task``, else the
fallback.

    >>> task_texts(card).menu_label
    'Moles and skin spots (7 findings)'
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.card import ModelCard


@dataclass(frozen=True)
class TaskTexts:
    """What the demo says about one model task.

    Attributes:
        key: Row name, the ``<task>`` of a ``skinlesion-<task>`` card name (``"ham10000"``).
        menu_label: The model menu entry; short enough for a phone's menu (about 35 characters).
        photo_kind: The kind of photo the model answers, to complete "This looks more like ..."
            (``"a photo of a skin rash"``).
        learned_from: The training photos in plain words, after "the model learned from".
        not_like_training: Why a photo that fails the abstain rule's pixel check was refused.
        tips: How to take a photo this model can answer, one imperative sentence each.
        no_risk_note: Shown in place of the risk band when the model estimates no skin-cancer risk.
        switch_label: Button text offering this model for a photo another model refused.
        match_words: Words of a card's ``task`` that select this row when the name does not.
    """

    key: str
    menu_label: str
    photo_kind: str
    learned_from: str
    not_like_training: str
    tips: tuple[str, ...]
    no_risk_note: str = "This model does not estimate a skin-cancer risk."
    switch_label: str = ""
    match_words: tuple[str, ...] = ()


_STEADY = "Hold the phone steady and tap the screen to focus, so the picture is sharp."
_LIGHT = "Use bright, even light (daylight by a window), without flash glare or shadows."

TASKS: dict[str, TaskTexts] = {
    "ham10000": TaskTexts(
        key="ham10000",
        menu_label="Moles and skin spots (7 findings)",
        photo_kind="a close-up of one skin spot or mole",
        learned_from="close-ups of single skin spots, taken in skin clinics",
        not_like_training=("This photo does not look like the close-ups of single skin spots this model "
                           "learned from."),
        tips=("Photograph one spot at a time, from close up (about a hand's width away).",
              "Put the spot in the middle of the picture, with some plain skin around it.",
              _STEADY, _LIGHT),
        switch_label="Ask the skin-spot model instead",
        match_words=("dermoscop", "lesion", "mole"),
    ),
    "msid": TaskTexts(
        key="msid",
        menu_label="Rashes: mpox, measles, chickenpox",
        photo_kind="a photo of a skin rash",
        learned_from="photos of skin rashes (mpox, measles, chickenpox) and of normal skin",
        not_like_training="This photo does not look like the photos of skin rashes this model learned from.",
        tips=("Show the rash itself, filling most of the picture.",
              "Take the photo from about 20-30 cm away, so several spots of the rash are in view.",
              _STEADY, _LIGHT),
        no_risk_note="This model tells rashes apart; it does not estimate a skin-cancer risk.",
        switch_label="Ask the rash model instead",
        match_words=("rash", "monkeypox", "mpox"),
    ),
}

FALLBACK = TaskTexts(
    key="other",
    menu_label="",  # built from the card by ``menu_label``
    photo_kind="the kind of photo this model learned from",
    learned_from="the photos in its training data",
    not_like_training="This photo does not look like the photos this model learned from.",
    tips=("Photograph the skin from close up, with the spot or rash in the middle of the picture.",
          _STEADY, _LIGHT),
    switch_label="Ask this model instead",
)

_NAME_PREFIX = "skinlesion-"


def task_texts(card: ModelCard) -> TaskTexts:
    """The row of :data:`TASKS` for ``card``: by name, then by a word of its task, else :data:`FALLBACK`."""
    key = card.name.removeprefix(_NAME_PREFIX)
    if key in TASKS:
        return TASKS[key]
    task = card.task.lower()
    for row in TASKS.values():
        if any(word in task for word in row.match_words):
            return row
    return FALLBACK


def menu_label(card: ModelCard, folder_name: str) -> str:
    """The model menu entry for a bundle: the task's short label, or ``folder: task`` for an unknown task."""
    return task_texts(card).menu_label or f"{folder_name}: {card.task}"
