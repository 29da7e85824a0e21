"""The tasks a model can be built for: one row each (classes, display names, malignant set, licence,
intended use, limitations and the demo's wording), read by the card, the TFLite metadata, the build, the
report and the app. ``data.task`` in a build config names a row; adding a task is one row here.

    >>> task("ham10000").malignant_codes
    ('akiec', 'bcc', 'mel')
    >>> task("msid").texts.menu_label
    'Rashes: mpox, measles, chickenpox'
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.abstain import DERMOSCOPY_RETAKE
from edge.card import ClassInfo

# What a TFLite file or card built outside any task says about its licence (never an empty string).
UNSTATED_LICENSE = "see the training data's license"


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


@dataclass(frozen=True)
class Task:
    """One task: what a model of it tells apart, under which terms, and how the demo talks about it.

    Attributes:
        key: The ``data.task`` value and the ``<task>`` of a ``skinlesion-<task>`` card name.
        image_kind: The training images in a few words; the card's ``task`` reads
            ``"<image_kind>, <n> classes"``.
        abstain_label: Name of the abstain head's "looks like the training images" output.
        retake: What to do instead, ending the runtime's refusal ("...; take a close-up through a
            dermatoscope").
        classes: Known classes, in output order, with display names and the malignant flag.
        fixed_classes: The output classes are :attr:`classes` whatever the data hold (other labels are
            dropped). Otherwise they are ``data.classes`` or the labels found in the data, and
            :attr:`classes` supplies display names for the codes it knows.
        license: Licence of the weights, inherited from the training data.
        intended_use: Who may use the model for what.
        limitations: Known failure modes, in plain words; the report closes with the first.
        texts: The demo's words for this task.
    """

    key: str
    image_kind: str
    abstain_label: str
    retake: str
    classes: tuple[ClassInfo, ...]
    fixed_classes: bool
    license: str
    intended_use: str
    limitations: tuple[str, ...]
    texts: TaskTexts

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.classes)

    @property
    def malignant_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.classes if c.malignant)

    def class_info(self, code: str) -> ClassInfo:
        """The row's entry for ``code``, or a plain one (display name = code, not malignant) for a code it
        does not know, e.g. a synthetic test label."""
        return next((c for c in self.classes if c.code == code), ClassInfo(code, code))


# Plain-language names for the HAM10000 / ISIC 2018 diagnoses; malignant per the dermatology convention
# (akiec = actinic keratosis / intraepithelial carcinoma is treated as malignant, as in ISIC benchmarks).
HAM10000_CLASSES = (
    ClassInfo(
        "akiec",
        "Actinic keratosis / Bowen's disease",
        True,
        "A rough, scaly patch from sun damage that can turn into skin cancer.",
    ),
    ClassInfo(
        "bcc",
        "Basal cell carcinoma",
        True,
        "The most common skin cancer; grows slowly and rarely spreads, but needs treatment.",
    ),
    ClassInfo(
        "bkl",
        "Benign keratosis",
        False,
        "A harmless growth such as a seborrheic keratosis, solar lentigo or lichen-planus-like keratosis.",
    ),
    ClassInfo("df", "Dermatofibroma", False, "A harmless firm bump in the skin."),
    ClassInfo("mel", "Melanoma", True, "A dangerous skin cancer; early treatment matters."),
    ClassInfo("nv", "Melanocytic nevus (mole)", False, "A common mole; almost always harmless."),
    ClassInfo(
        "vasc",
        "Vascular lesion",
        False,
        "A harmless blood-vessel growth such as a cherry angioma or haemorrhage.",
    ),
)

MSID_CLASSES = (
    ClassInfo("Chickenpox", "Chickenpox", False, "A common viral infection with an itchy blister rash."),
    ClassInfo("Measles", "Measles", False, "A contagious viral infection with a spreading rash and fever."),
    ClassInfo(
        "Monkeypox",
        "Mpox (monkeypox)",
        False,
        "A viral infection with a blistering rash; see a doctor and avoid close contact.",
    ),
    ClassInfo("Normal", "No rash", False, "Skin without a visible rash."),
)

_INTENDED_USE = (
    "Education, research and triage support: ranks likely findings in a dermoscopic image and "
    "suggests when to see a dermatologist. Not a diagnosis and not a medical device; it must not "
    "replace examination by a clinician."
)
# Photo tips every task shares (the demo's fallback row too).
STEADY_TIP = "Hold the phone steady and tap the screen to focus, so the picture is sharp."
LIGHT_TIP = "Use bright, even light (daylight by a window), without flash glare or shadows."

TASKS: dict[str, Task] = {
    "ham10000": Task(
        key="ham10000",
        image_kind="dermoscopic images",
        abstain_label="dermoscopy",
        retake=DERMOSCOPY_RETAKE,
        classes=HAM10000_CLASSES,
        fixed_classes=True,
        license="Weights: CC BY-NC 4.0, inherited from HAM10000 (Tschandl et al. 2018, doi:10.7910/DVN/DBW86T). "
        "Non-commercial use only. Code: Apache-2.0.",
        intended_use=_INTENDED_USE,
        limitations=(
            "Trained on dermoscopic images (HAM10000, mostly fair skin, Austria and Australia); photos taken "
            "without a dermatoscope, other skin types and body sites rare in the data are out of its experience.",
            "Seven classes only: anything else (e.g. squamous cell carcinoma outside akiec, rashes, scars) is "
            "forced into one of them unless the abstain rule refuses the image.",
            "Validated on a lesion-grouped split of HAM10000, not on a prospective clinical population; "
            "minority classes (df, vasc, akiec) have few validation images, so their recall is uncertain.",
            "Non-square photos are stretched to a square, the framing it was validated on; crop around the "
            "lesion for best results.",
            "Dermoscopy from other clinics and cameras is harder for it than HAM10000's own: on ISIC-archive "
            "images HAM10000 lacks it ranks malignant lesions markedly worse (the card's external metrics).",
        ),
        texts=TaskTexts(
            key="ham10000",
            menu_label="Moles and skin spots (7 findings)",
            photo_kind="a close-up of one skin spot or mole",
            learned_from="close-ups of single skin spots, taken in skin clinics",
            not_like_training=(
                "This photo does not look like the close-ups of single skin spots this model learned from."
            ),
            tips=(
                "Photograph one spot at a time, from close up (about a hand's width away).",
                "Put the spot in the middle of the picture, with some plain skin around it.",
                STEADY_TIP,
                LIGHT_TIP,
            ),
            switch_label="Ask the skin-spot model instead",
            match_words=("dermoscop", "lesion", "mole"),
        ),
    ),
    "msid": Task(
        key="msid",
        image_kind="clinical photos",
        abstain_label="clinical_photo",
        retake="take a sharp, well-lit photo of the rash from 20-30 cm away",
        classes=MSID_CLASSES,
        fixed_classes=False,
        license="Weights: non-commercial research use, inherited from the Monkeypox Skin Images Dataset "
        "(Ali et al., Mendeley Data r9bfpnvyxr). Code: Apache-2.0.",
        intended_use=_INTENDED_USE,
        limitations=(
            "Trained on 763 clinical photos collected from the web; small and not representative of any clinic.",
            "Four classes only; other rashes are forced into one of them.",
            "A research demonstration, not a screening tool.",
        ),
        texts=TaskTexts(
            key="msid",
            menu_label="Rashes: mpox, measles, chickenpox",
            photo_kind="a photo of a skin rash",
            learned_from="photos of skin rashes (mpox, measles, chickenpox) and of normal skin",
            not_like_training="This photo does not look like the photos of skin rashes this model learned from.",
            tips=(
                "Show the rash itself, filling most of the picture.",
                "Take the photo from about 20-30 cm away, so several spots of the rash are in view.",
                STEADY_TIP,
                LIGHT_TIP,
            ),
            no_risk_note="This model tells rashes apart; it does not estimate a skin-cancer risk.",
            switch_label="Ask the rash model instead",
            match_words=("rash", "monkeypox", "mpox"),
        ),
    ),
}


def task(key: str) -> Task:
    """The row of :data:`TASKS` named ``key``.

    Raises:
        ValueError: No task has that name (the message lists the known ones).
    """
    if key not in TASKS:
        raise ValueError(f"unknown task {key!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def for_card_name(name: str) -> Task | None:
    """The row a card's ``name`` (``skinlesion-<task>``) names, or None for another name."""
    return TASKS.get(name.removeprefix("skinlesion-"))


def known_class(code: str) -> ClassInfo | None:
    """The entry of ``code`` in any task, or None: names and malignancy for a bare model file's labels."""
    return next((c for row in TASKS.values() for c in row.classes if c.code == code), None)
