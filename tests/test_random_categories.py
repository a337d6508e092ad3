"""RD on any dataset: random categories from a vocabulary, written as the same neighbours.csv SD writes."""
import json

import numpy as np
import pytest

from ltkit.crawl.neighbour_map import load_neighbour_map
from ltkit.crawl.neighbours import search_neighbours
from ltkit.crawl.random_categories import RandomBackend, read_vocabulary
from ltkit.errors import UserError

TARGETS = ["tabby cat", "golden retriever", "red fox", "barn owl"]
COUNTS = [500, 60, 12, 5]  # many, medium, few, few


def vocabulary(n: int = 300) -> list[str]:
    return [f"thing {i}" for i in range(n)] + ["Tabby Cat", "red-fox"]  # two spellings of target classes


def test_read_vocabulary_formats(tmp_path):
    txt = tmp_path / "names.txt"
    txt.write_text("# candidates\nwalrus\n\nnarwhal\nwalrus\n  beluga  \n")
    assert read_vocabulary(txt) == ["walrus", "narwhal", "beluga"]
    tax = tmp_path / "tax.json"
    tax.write_text(json.dumps({"classes": {"walrus": ["animal", "pinniped"], "seal": ["animal", "pinniped"]}}))
    assert read_vocabulary(tax) == ["walrus", "seal"]
    inat = tmp_path / "categories.json"
    inat.write_text(json.dumps([{"id": 1, "name": "Puma concolor"}, {"id": 2, "name": "Lynx rufus"}]))
    assert read_vocabulary(inat) == ["Puma concolor", "Lynx rufus"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": 1}]))
    with pytest.raises(UserError, match=r"categories\[0\]"):
        read_vocabulary(bad)
    with pytest.raises(UserError, match="not found"):
        read_vocabulary(tmp_path / "missing.txt")


def test_random_map_is_a_neighbour_map_outside_the_label_set(tmp_path):
    res = search_neighbours(RandomBackend(vocabulary(), seed=0), TARGETS, COUNTS, tmp_path, k=3)
    nmap = load_neighbour_map(tmp_path / "neighbours.csv", len(TARGETS))
    assert nmap.num_aux == int(res.budget.sum()) > 0  # every budget filled
    keys = {t.lower().replace("-", " ") for t in TARGETS}
    assert not {n.lower().replace("-", " ") for n in nmap.aux_names} & keys
    assert len(set(nmap.aux_names)) == nmap.num_aux
    assert np.array_equal(np.bincount(nmap.aux_parent, minlength=len(TARGETS)), res.budget)
    assert {r.backend for r in res.rows} == {"random"}


def test_random_map_is_seeded(tmp_path):
    def names(seed, out):
        search_neighbours(RandomBackend(vocabulary(), seed=seed), TARGETS, COUNTS, tmp_path / out, k=3)
        return load_neighbour_map(tmp_path / out / "neighbours.csv", len(TARGETS)).aux_names

    assert names(0, "a") == names(0, "b")
    assert names(0, "a") != names(1, "c")


def test_label_set_names_are_dropped_not_kept(tmp_path):
    """A vocabulary of nothing but target names leaves every class short, with the reason written down."""
    res = search_neighbours(RandomBackend(["Tabby Cat", "red fox", "barn owl"]), TARGETS, COUNTS, tmp_path, k=2)
    assert not [r for r in res.rows if r.status == "kept"]
    assert {r.reason for r in res.rows} == {"in_label_set"}
