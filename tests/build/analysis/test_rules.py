"""Association rules against a table small enough to count by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from build.analysis.rules import (
    Rule,
    age_band,
    association_rules,
    encode_items,
    frequent_itemsets,
    mine_rules,
    rules_table,
)

# Eight images. Counted by hand:
#   back 4 (rows 0-3), face 3 (4-6), male 4 (0,1,3,6), female 4; mel 2 (0,1), bkl 2 (4,5), nv 4
#   back & male 3 (0,1,3), back & male & mel 2, face & female 2 (4,5), face & female & bkl 2
TINY = pd.DataFrame(
    {
        "localization": ["back", "back", "back", "back", "face", "face", "face", "trunk"],
        "sex": ["male", "male", "female", "male", "female", "female", "male", "female"],
        "age": [70, 80, 20, 65, 77, 61, 35, 50],
        "label": ["mel", "mel", "nv", "nv", "bkl", "bkl", "nv", "nv"],
    }
)


def test_items_are_one_hot_with_age_bands_and_diagnosis():
    items = encode_items(TINY)

    assert items.dtypes.eq(bool).all()
    assert items["localization=back"].tolist() == [True] * 4 + [False] * 4
    assert items["age=60-74"].tolist() == [True, False, False, True, False, True, False, False]
    assert items["age>=75"].sum() == 2 and items["age<30"].sum() == 1
    assert items["dx=mel"].tolist() == [True, True] + [False] * 6
    # Each image holds exactly one item per attribute.
    assert (items.filter(like="localization=").sum(axis=1) == 1).all()
    assert (items.filter(like="dx=").sum(axis=1) == 1).all()


def test_missing_and_unknown_values_give_no_item():
    frame = pd.DataFrame(
        {
            "sex": ["male", None, "unknown", float("nan")],
            "age": [None, 40, float("nan"), 90],
            "label": ["nv", "nv", "mel", "mel"],
        }
    )

    items = encode_items(frame)

    assert [c for c in items.columns if c.startswith("sex")] == ["sex=male"]
    assert items.filter(like="sex").sum(axis=1).tolist() == [1, 0, 0, 0]
    assert items.filter(regex="^age").sum(axis=1).tolist() == [0, 1, 0, 1]


def test_age_band_edges():
    assert [age_band(a) for a in (0, 29.9, 30, 44, 45, 59, 60, 74, 75, 85)] == [
        "age<30",
        "age<30",
        "age=30-44",
        "age=30-44",
        "age=45-59",
        "age=45-59",
        "age=60-74",
        "age=60-74",
        "age>=75",
        "age>=75",
    ]
    assert age_band(float("nan")) is None


def test_frequent_itemsets_supports_are_exact():
    itemsets = frequent_itemsets(encode_items(TINY), min_support=0.25)

    assert itemsets[("localization=back",)] == 4 / 8
    assert itemsets[("localization=back", "sex=male")] == 3 / 8
    assert itemsets[("localization=back", "sex=male", "dx=mel")] == 2 / 8
    assert itemsets[("localization=face", "sex=female", "dx=bkl")] == 2 / 8
    assert ("localization=trunk",) not in itemsets  # 1 of 8 < 0.25
    assert ("localization=back", "sex=female") not in itemsets  # 1 of 8
    assert all(v >= 0.25 for v in itemsets.values())
    # Two values of one attribute never form an itemset.
    assert not any(sum(item.startswith("sex=") for item in key) > 1 for key in itemsets)


def test_rules_match_hand_computed_support_confidence_lift():
    rules = mine_rules(encode_items(TINY), min_support=0.25, min_confidence=0.5, min_lift=1.5)

    got = [(str(r), r.support, r.confidence, r.lift) for r in rules]
    assert got == [
        ("{localization=face, sex=female} -> dx=bkl", 0.25, 1.0, 4.0),
        ("{localization=back, sex=male} -> dx=mel", 0.25, pytest.approx(2 / 3), pytest.approx(8 / 3)),
        ("{localization=face} -> dx=bkl", 0.25, pytest.approx(2 / 3), pytest.approx(8 / 3)),
        ("{localization=back} -> dx=mel", 0.25, 0.5, 2.0),
        ("{sex=female} -> dx=bkl", 0.25, 0.5, 2.0),
        ("{sex=male} -> dx=mel", 0.25, 0.5, 2.0),
    ]


def test_min_lift_and_min_confidence_filter():
    items = encode_items(TINY)
    # {back} -> nv has confidence 0.5 and lift exactly 1: kept at min_lift 1, not above it.
    names = {str(r) for r in mine_rules(items, min_support=0.25, min_confidence=0.5, min_lift=1.0)}
    assert "{localization=back} -> dx=nv" in names
    strict = mine_rules(items, min_support=0.25, min_confidence=0.6, min_lift=1.0)
    assert {str(r) for r in strict} == {
        "{localization=face, sex=female} -> dx=bkl",
        "{localization=back, sex=male} -> dx=mel",
        "{localization=face} -> dx=bkl",
    }


def test_redundant_rules_are_dropped_unless_asked():
    frame = pd.DataFrame(
        {
            "localization": ["face"] * 3 + ["back"] * 3,
            "sex": ["male", "male", "female"] * 2,
            "label": ["bkl"] * 3 + ["nv"] * 3,
        }
    )
    items = encode_items(frame)

    pruned = {str(r) for r in mine_rules(items, min_support=0.3, min_confidence=0.9)}
    full = {str(r) for r in mine_rules(items, min_support=0.3, min_confidence=0.9, drop_redundant=False)}

    # {face, male} -> bkl is as sure as {face} -> bkl and says nothing more.
    assert pruned == {"{localization=face} -> dx=bkl", "{localization=back} -> dx=nv"}
    assert full == pruned | {
        "{localization=face, sex=male} -> dx=bkl",
        "{localization=back, sex=male} -> dx=nv",
    }


def test_any_consequent_when_no_prefix():
    itemsets = frequent_itemsets(encode_items(TINY), min_support=0.25)

    rules = association_rules(itemsets, min_confidence=1.0, consequent_prefix=None)

    assert "{dx=mel} -> localization=back" in {str(r) for r in rules}
    mel_back = next(r for r in rules if str(r) == "{dx=mel} -> localization=back")
    assert (mel_back.support, mel_back.confidence, mel_back.lift) == (0.25, 1.0, 2.0)


def test_rule_text_and_serialization():
    rule = Rule(("localization=back", "age>=75"), ("dx=bkl",), 0.1, 0.5, 2.5)

    assert str(rule) == "{localization=back, age>=75} -> dx=bkl"
    assert str(Rule(("a=1",), ("b=2", "c=3"), 0.1, 0.5, 2.5)) == "{a=1} -> {b=2, c=3}"
    data = json.loads(json.dumps(rule.to_dict()))
    assert data["antecedent"] == ["localization=back", "age>=75"] and data["lift"] == 2.5
    table = rules_table([rule])
    assert table.loc[0, "rule"] == str(rule) and table.loc[0, "confidence"] == 0.5


def test_bad_thresholds_raise():
    items = encode_items(TINY)
    with pytest.raises(ValueError, match="min_support"):
        frequent_itemsets(items, min_support=0)
    with pytest.raises(ValueError, match="min_confidence"):
        association_rules({}, min_confidence=1.5)
    with pytest.raises(ValueError, match="'dx'"):
        encode_items(TINY, label_column="dx")


@pytest.mark.shared_data
def test_real_ham10000_rules(shared_ham):
    frame = pd.read_csv(shared_ham / "HAM10000_metadata.csv")

    rules = mine_rules(encode_items(frame, label_column="dx"))

    assert rules, "HAM10000 metadata should give rules at the default thresholds"
    assert all(r.consequent[0].startswith("dx=") and r.lift >= 1.0 for r in rules)
    assert [r.lift for r in rules] == sorted((r.lift for r in rules), reverse=True)
    # A known pattern of HAM10000: keratoses are over-represented on the face.
    face = next(r for r in rules if str(r) == "{localization=face} -> dx=bkl")
    assert face.lift > 3


@pytest.fixture
def shared_ham() -> Path:
    root = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ham10000"
    if not (root / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"needs the shared HAM10000 data at {root} (absent in a fresh clone)")
    return root
