"""RD on any dataset: random categories from a vocabulary, written as the same neighbours.csv SD writes."""
import json
from pathlib import Path

import numpy as np
import pytest

from ltkit.artifacts.neighbour_map import load_neighbour_map
from ltkit.errors import UserError
from ltkit.neighbours.random_categories import RandomBackend, read_vocabulary
from ltkit.neighbours.search import search_neighbours

ROOT = Path(__file__).resolve().parents[1]

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


def test_cli_writes_the_random_map(tmp_path, capsys):
    from ltkit.neighbours.cli import main

    vocab, classes = tmp_path / "names.txt", tmp_path / "classes.txt"
    vocab.write_text("\n".join(vocabulary()))
    classes.write_text("\n".join(f"{n},{c}" for n, c in zip(TARGETS, COUNTS)))
    assert main(["--out", str(tmp_path / "rd"), "k=3", "neighbours.backend=random", f"neighbours.file={vocab}",
                 f"neighbours.classes_file={classes}"]) == 0
    nmap = load_neighbour_map(tmp_path / "rd" / "neighbours.csv", len(TARGETS))
    assert nmap.num_aux > 0 and set(nmap.aux_names) <= set(vocabulary())
    with pytest.raises(UserError, match="vocabulary file not found"):
        main(["--out", str(tmp_path / "x"), "neighbours.backend=random", f"neighbours.file={tmp_path / 'no.txt'}",
              f"neighbours.classes_file={classes}"])


def test_trainer_reads_a_random_map_like_a_neighbour_map(tmp_path, tiny_world):
    """On the world: random categories from its taxonomy, written by the search, trained on as aux=neighbours."""
    from ltkit.auxiliary import build_aux
    from ltkit.config import load_config
    from ltkit.neighbours.cli import search_config
    from ltkit.data.datasets import build_target_data

    cfg = load_config(ROOT / "configs" / "builtin-tiny.yaml",
                      {"out_dir": str(tmp_path), "aux": "neighbours", "neighbours_csv": str(tmp_path / "rd" / "neighbours.csv"),
                       "neighbours.backend": "random", "neighbours.out_dir": str(tmp_path / "rd")})
    search_config(cfg)
    data, world = build_target_data(cfg)
    images, parent, names = build_aux(cfg, data, world)  # the trainer's auxiliary assembly
    assert len(names) > 0 and len(images) > 0 and not set(names) & set(tiny_world.class_names)
    assert set(names) <= set(tiny_world.all_names)
    # not the neighbour search's choice: mostly outside each parent's shape family
    family = {c.name: c.family for c in tiny_world.classes}
    assert np.mean([family[a] == family[data.class_names[p]] for a, p in zip(names, parent)]) < 0.5
