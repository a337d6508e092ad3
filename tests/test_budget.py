"""The head : medium : tail budget of auxiliary categories."""
import numpy as np
import pytest

from ltkit.budget import aux_budget, default_ratio, parse_ratio

# many: 300 + 200 + 120 = 620; medium: 80 + 50 + 20 = 150; few: 19 + 10 + 5 = 34
COUNTS = [300, 200, 120, 80, 50, 20, 19, 10, 5]
GROUP = ["many"] * 3 + ["medium"] * 3 + ["few"] * 3


def by_group(budget):
    return {g: sorted({int(b) for b, h in zip(budget, GROUP) if h == g}) for g in ("many", "medium", "few")}


def test_default_ratio_on_hand_made_counts():
    # 1 : ceil(620 / 150) : ceil(620 / 34) = 1 : ceil(4.13) : ceil(18.2)
    assert default_ratio(COUNTS) == (1.0, 5.0, 19.0)
    # the thresholds move classes between groups: many > 150 (500), medium 20..150 (270), few < 20 (34)
    assert default_ratio(COUNTS, many=150) == (1.0, 2.0, 15.0)


def test_default_ratio_empty_groups():
    assert default_ratio([500, 300, 200]) == (1.0, 0.0, 0.0)
    assert default_ratio([500, 5, 5]) == (1.0, 0.0, 50.0)
    with pytest.raises(ValueError, match="at least one Many-shot class"):
        default_ratio([100, 50, 5])


def test_aux_budget_default_ratio():
    b = aux_budget(COUNTS, k=5)
    # 1:5:19 with k=5 for the largest: ceil(5/19) = 1, ceil(25/19) = 2, 5
    assert by_group(b) == {"many": [1], "medium": [2], "few": [5]}
    assert b.dtype.kind == "i" and len(b) == len(COUNTS)


@pytest.mark.parametrize("ratio,want", [
    ("1:1:3", {"many": [2], "medium": [2], "few": [5]}),
    ("0:1:3", {"many": [0], "medium": [2], "few": [5]}),
    ((1, 1, 3), {"many": [2], "medium": [2], "few": [5]}),
    ("1:1:1", {"many": [5], "medium": [5], "few": [5]}),
    ("3:0:1", {"many": [5], "medium": [0], "few": [2]}),
])
def test_aux_budget_explicit_ratio(ratio, want):
    assert by_group(aux_budget(COUNTS, k=5, ratio=ratio)) == want


def test_aux_budget_thresholds_and_cap():
    b = aux_budget(COUNTS, k=10, ratio="1:2:4", many=150, few=80)
    # groups: many = 300, 200; medium = 120, 80; few = the rest
    assert b.tolist() == [3, 3, 5, 5, 10, 10, 10, 10, 10]
    assert aux_budget(COUNTS, k=0, ratio="1:1:3").tolist() == [0] * len(COUNTS)


def test_parse_ratio():
    assert parse_ratio("1:1:3") == (1.0, 1.0, 3.0)
    assert parse_ratio(" 1 : 0.5:2 ") == (1.0, 0.5, 2.0)
    assert parse_ratio(np.array([0, 1, 3])) == (0.0, 1.0, 3.0)


@pytest.mark.parametrize("bad", ["1:1", "1:1:3:4", "a:b:c", "1:1:", "-1:1:3", "0:0:0", "1:1:nan", "1:inf:3",
                                 [1, None, 3], [], ""])
def test_parse_ratio_errors(bad):
    with pytest.raises(ValueError, match="ratio .*expected"):
        parse_ratio(bad)
