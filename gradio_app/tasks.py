"""The demo's words per model task: the ``texts`` of each row of ``edge.tasks.TASKS``, one fallback row.

Every sentence that depends on what a model was trained on (the menu entry, what a good photo looks like,
why a photo was refused, the note for a model without a skin-cancer risk) lives in a task's row, so a
second model never borrows the first one's words. A card picks its row by
:func:`task_texts`: its ``name`` (``skinlesion-<task>``), else a word of its ``task``, else the
fallback.

    >>> task_texts(card).menu_label
    'Moles and skin spots (7 findings)'
"""

from __future__ import annotations

from edge import tasks as task_table
from edge.card import ModelCard
from edge.tasks import LIGHT_TIP, STEADY_TIP, TaskTexts

FALLBACK = TaskTexts(
    key="other",
    menu_label="",  # built from the card by ``menu_label``
    photo_kind="the kind of photo this model learned from",
    learned_from="the photos in its training data",
    not_like_training="This photo does not look like the photos this model learned from.",
    tips=(
        "Photograph the skin from close up, with the spot or rash in the middle of the picture.",
        STEADY_TIP,
        LIGHT_TIP,
    ),
    switch_label="Ask this model instead",
)


def task_texts(card: ModelCard) -> TaskTexts:
    """The words of ``card``'s row of ``edge.tasks.TASKS``: by name, then by a word of its task, else
    :data:`FALLBACK`."""
    named = task_table.for_card_name(card.name)
    if named is not None:
        return named.texts
    task = card.task.lower()
    for row in task_table.TASKS.values():
        if any(word in task for word in row.texts.match_words):
            return row.texts
    return FALLBACK


def menu_label(card: ModelCard, folder_name: str) -> str:
    """The model menu entry for a bundle: the task's short label, or ``folder: task`` for an unknown task."""
    return task_texts(card).menu_label or f"{folder_name}: {card.task}"
