"""Association rules over image metadata: which localization, age, sex, dx_type go with which diagnosis.

A plain Apriori on a one-hot item table, with pandas and numpy only:

    >>> items = encode_items(frame)                      # one boolean column per "attribute=value"
    >>> rules = mine_rules(items, min_support=0.01, min_confidence=0.3)
    >>> print(rules[0])                                  # sorted by lift, highest first
    {localization=face, age>=75} -> dx=bkl

For a rule ``A -> C`` over N images: support = share of images holding every item of A and C,
confidence = support(A and C) / support(A), lift = confidence / support(C) (> 1: A makes C more
likely than its base rate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Sequence

import pandas as pd

from build.analysis.metrics import AGE_BANDS as SUBGROUP_AGE_BANDS


def _age_item(low: float, high: float) -> str:
    if high == math.inf:
        return f"age>={low:g}"
    if low <= 0:
        return f"age<{high:g}"
    return f"age={low:g}-{high - 1:g}"


# The evaluation's subgroup age bands (build.analysis.metrics), so a rule and a subgroup row name the same people:
# (low, high, item) in years, low inclusive, high exclusive.
AGE_BANDS: tuple[tuple[float, float, str], ...] = tuple(
    (low, high, _age_item(low, high)) for low, high, _ in SUBGROUP_AGE_BANDS
)

# Metadata columns turned into items, in the order items are printed within a rule.
METADATA_COLUMNS = ("localization", "age", "sex", "dx_type")
DIAGNOSIS = "dx"
DIAGNOSIS_PREFIX = f"{DIAGNOSIS}="
# Defaults for HAM10000-sized data: 0.5% is ~50 images, and minority diagnoses have base rates of
# 1-11%, so a rule can be worth reading (lift 2-7) at a confidence well under one half.
MIN_SUPPORT = 0.005
MIN_CONFIDENCE = 0.2
# Values that mean "not recorded": they would only produce rules about how the data was collected.
MISSING_VALUES = frozenset({"", "unknown", "nan", "none"})


@dataclass(frozen=True)
class Rule:
    """One association rule ``antecedent -> consequent``.

    Attributes:
        antecedent: Items on the left, e.g. ``("localization=back", "age>=75")``.
        consequent: Items on the right, e.g. ``("dx=bkl",)``.
        support: Share of transactions holding every item of both sides.
        confidence: support / support(antecedent): how often the consequent holds when the antecedent does.
        lift: confidence / support(consequent); 1 means independence.
    """

    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    support: float
    confidence: float
    lift: float

    def __str__(self) -> str:
        right = self.consequent[0] if len(self.consequent) == 1 else "{" + ", ".join(self.consequent) + "}"
        return "{" + ", ".join(self.antecedent) + "} -> " + right

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "antecedent": list(self.antecedent),
            "consequent": list(self.consequent),
            "rule": str(self),
        }


def age_band(age: float) -> str | None:
    """The age item for ``age`` in years (None when missing)."""
    if age is None or (isinstance(age, float) and math.isnan(age)):
        return None
    for low, high, item in AGE_BANDS:
        if low <= age < high:
            return item
    return None


def encode_items(
    frame: pd.DataFrame, *, label_column: str = "label", columns: Sequence[str] = METADATA_COLUMNS
) -> pd.DataFrame:
    """One-hot items of each row: ``attribute=value`` for metadata, age bands, and ``dx=<label>``.

    Columns of ``columns`` that the frame lacks are skipped, so data sets without ``dx_type`` (or
    without any metadata) still encode. Missing values and "unknown" give no item.

    Args:
        frame: One row per image, e.g. from ``build.make.datasets.load_dataset``.
        label_column: The diagnosis column; its values become ``dx=...`` items.
        columns: Metadata columns to encode; ``age`` is binned into :data:`AGE_BANDS`.

    Returns:
        A boolean DataFrame, one column per item, same row order as ``frame``.
    """
    if label_column not in frame.columns:
        raise ValueError(
            f"encode_items: no {label_column!r} column in the table (columns: {list(frame.columns)})"
        )
    parts = []
    for column in [c for c in columns if c in frame.columns]:
        if column == "age":
            values = pd.to_numeric(frame[column], errors="coerce").map(age_band)
            order = [item for _, _, item in AGE_BANDS]
        else:
            values = frame[column].map(lambda v, c=column: _item(c, v))
            order = sorted(set(values.dropna()))  # dropna: pandas stores a mapped None as NaN
        parts.append(_one_hot(values, order))
    labels = frame[label_column].map(lambda v: _item(DIAGNOSIS, v))
    parts.append(_one_hot(labels, sorted(set(labels.dropna()))))
    return pd.concat(parts, axis=1)


def frequent_itemsets(
    items: pd.DataFrame, *, min_support: float, max_length: int = 4
) -> dict[tuple[str, ...], float]:
    """Apriori: every itemset whose support is at least ``min_support``.

    Args:
        items: Boolean one-hot table from :func:`encode_items` (one row per transaction).
        min_support: Smallest share of rows an itemset must cover, in (0, 1].
        max_length: Longest itemset considered.

    Returns:
        ``{itemset: support}``; itemsets are tuples in the column order of ``items``.
    """
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if len(items) == 0:
        return {}
    matrix = items.to_numpy(dtype=bool)
    names = list(items.columns)
    attribute = [name.split("=", 1)[0].split("<", 1)[0].split(">", 1)[0] for name in names]
    support = matrix.mean(axis=0)
    level = [(i,) for i in range(len(names)) if support[i] >= min_support]
    found = {key: float(support[key[0]]) for key in level}
    length = 1
    while level and length < max_length:
        length += 1
        previous = set(level)
        candidates = []
        for a, b in combinations(level, 2):
            # Join itemsets sharing all but the last item: ``level`` is sorted, so a[-1] < b[-1] and
            # each candidate comes out once, itself sorted.
            if a[:-1] != b[:-1]:
                continue
            candidate = a + (b[-1],)
            if len({attribute[i] for i in candidate}) < len(candidate):
                continue  # two values of one attribute never co-occur
            if all(sub in previous for sub in combinations(candidate, length - 1)):
                candidates.append(candidate)
        level = []
        for candidate in candidates:
            share = float(matrix[:, list(candidate)].all(axis=1).mean())
            if share >= min_support:
                found[candidate] = share
                level.append(candidate)
        level.sort()
    return {tuple(names[i] for i in key): value for key, value in found.items()}


def association_rules(
    itemsets: dict[tuple[str, ...], float],
    *,
    min_confidence: float,
    consequent_prefix: str | None = DIAGNOSIS_PREFIX,
    min_lift: float = 0.0,
    drop_redundant: bool = True,
) -> list[Rule]:
    """Rules ``A -> C`` from frequent itemsets, sorted by lift (then confidence, support), highest first.

    Args:
        itemsets: Output of :func:`frequent_itemsets` (every subset of a frequent itemset is in it).
        min_confidence: Smallest confidence kept, in [0, 1].
        consequent_prefix: Keep only rules whose consequent is one item starting with this prefix
            (default: a diagnosis); None allows any non-empty proper subset as the consequent.
        min_lift: Smallest lift kept.
        drop_redundant: Drop a rule when a rule with fewer antecedent items and the same consequent
            is at least as confident (``{face, male} -> bkl`` adds nothing if ``{face} -> bkl`` is as
            sure); otherwise the top of the list repeats one finding with every extra item.
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    rules = []
    for itemset, support in itemsets.items():
        if len(itemset) < 2:
            continue
        for consequent in _consequents(itemset, consequent_prefix):
            antecedent = tuple(i for i in itemset if i not in consequent)
            confidence = support / itemsets[antecedent]
            lift = confidence / itemsets[consequent]
            if confidence < min_confidence or lift < min_lift:
                continue
            if drop_redundant and _has_better_general_rule(itemsets, itemset, consequent, confidence):
                continue
            rules.append(Rule(antecedent, consequent, support, confidence, lift))
    rules.sort(key=lambda r: (-r.lift, -r.confidence, -r.support, str(r)))
    return rules


def mine_rules(
    items: pd.DataFrame,
    *,
    min_support: float = MIN_SUPPORT,
    min_confidence: float = MIN_CONFIDENCE,
    max_length: int = 4,
    consequent_prefix: str | None = DIAGNOSIS_PREFIX,
    min_lift: float = 1.0,
    drop_redundant: bool = True,
) -> list[Rule]:
    """Frequent itemsets and their rules in one call.

    See :func:`frequent_itemsets` and :func:`association_rules` for the arguments.
    """
    itemsets = frequent_itemsets(items, min_support=min_support, max_length=max_length)
    return association_rules(
        itemsets,
        min_confidence=min_confidence,
        consequent_prefix=consequent_prefix,
        min_lift=min_lift,
        drop_redundant=drop_redundant,
    )


def rules_table(rules: Iterable[Rule]) -> pd.DataFrame:
    """Rules as a table (rule, antecedent, consequent, support, confidence, lift) for CSV export."""
    rows = [
        {
            "rule": str(r),
            "antecedent": "; ".join(r.antecedent),
            "consequent": "; ".join(r.consequent),
            "support": r.support,
            "confidence": r.confidence,
            "lift": r.lift,
        }
        for r in rules
    ]
    return pd.DataFrame(rows, columns=["rule", "antecedent", "consequent", "support", "confidence", "lift"])


def _has_better_general_rule(
    itemsets: dict[tuple[str, ...], float],
    itemset: tuple[str, ...],
    consequent: tuple[str, ...],
    confidence: float,
) -> bool:
    antecedent = [i for i in itemset if i not in consequent]
    for size in range(1, len(antecedent)):
        for general in combinations(antecedent, size):
            # Subsets of a frequent itemset are frequent, so both supports are in the table.
            joint = tuple(i for i in itemset if i in general or i in consequent)
            if itemsets[joint] / itemsets[general] >= confidence:
                return True
    return False


def _consequents(itemset: tuple[str, ...], prefix: str | None) -> list[tuple[str, ...]]:
    if prefix is not None:
        return [(item,) for item in itemset if item.startswith(prefix)]
    return [sub for size in range(1, len(itemset)) for sub in combinations(itemset, size)]


def _item(attribute: str, value) -> str | None:
    # One step from value to item: a None returned by an intermediate Series.map becomes NaN.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING_VALUES else f"{attribute}={text}"


def _one_hot(values: pd.Series, order: list[str]) -> pd.DataFrame:
    array = values.to_numpy(dtype=object)
    return pd.DataFrame({item: array == item for item in order}, index=values.index)
