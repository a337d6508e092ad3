"""Neighbour search: prompt, parsing, backends (real openai client against a fake server), cache, leak
filter, neighbour map, CLI and notebook 02."""
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from fake_llm import FakeLLM
from ltkit import neighbours as nb
from ltkit.budget import aux_budget
from ltkit.data.taxonomy import Taxonomy

KEY = "sk-test-SECRET-7f3a9c"  # must never reach a file, a log or an output
ROOT = Path(__file__).resolve().parents[1]

PAPER_TEXT = """Task: Given a category name, please list out 5 classes that are fine-grained categories related to the provided classes.

Query: sports car

Response: sedan, coupe, SUV, luxury car, electric car

Query: {CLS}

Response:"""


def llm(srv: FakeLLM, **kw) -> nb.OpenAIBackend:
    """The real openai client pointed at the fake server, retrying fast."""
    kw = {"api_key": KEY, "timeout": 2.0, "retries": 2, "backoff": 0.01, **kw}
    return nb.OpenAIBackend("fake-model", srv.url, **kw)


def assert_no_key(*paths: Path) -> None:
    for p in paths:
        for f in ([p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]):
            assert KEY not in f.read_text(errors="replace"), f"API key leaked into {f}"


# --- prompt and parsing -------------------------------------------------------------------------


def test_paper_prompt_is_exact():
    assert nb.build_prompt(nb.PAPER_TEMPLATE, "{CLS}", 5) == PAPER_TEXT
    p = nb.build_prompt(nb.PAPER_TEMPLATE, "teal striped hexagon", 3)
    assert "list out 3 classes" in p and p.endswith("Query: teal striped hexagon\n\nResponse:")
    assert nb.build_prompt("{CLS} {json: 1}", "cat", 2) == "cat {json: 1}"  # other braces stay literal
    with pytest.raises(ValueError, match=r"\{CLS\}"):
        nb.build_prompt("no placeholder", "cat", 5)


PARSE_CASES = [
    ("sedan, coupe, SUV, luxury car, electric car", ["sedan", "coupe", "SUV", "luxury car", "electric car"]),
    (" Response: sedan, coupe, SUV.", ["sedan", "coupe", "SUV"]),
    ("1. sedan\n2. coupe\n3) SUV\n4) luxury car\n5. electric car", ["sedan", "coupe", "SUV", "luxury car", "electric car"]),
    ("- sedan\n* coupe\n• SUV\n+ hatchback", ["sedan", "coupe", "SUV", "hatchback"]),
    ('"sedan", "coupe", \'SUV\', “minivan”', ["sedan", "coupe", "SUV", "minivan"]),
    ("Sedans, sedan, SEDAN, coupes, coupe", ["Sedans", "coupes"]),
    ("sedan, coupe, and SUV", ["sedan", "coupe", "SUV"]),
    ("Here are 5 fine-grained categories related to cars:\n1. **Sedan**: four doors\n2. Coupe - two doors\n3. SUV (sport utility)",
     ["Sedan", "Coupe", "SUV"]),
    ("sedan, coupe\n\nQuery: dog\n\nResponse: beagle, poodle", ["sedan", "coupe"]),
    (PAPER_TEXT.replace("{CLS}", "truck") + " pickup, lorry, van", ["pickup", "lorry", "van"]),
    ("1. sedan 2. coupe 3. SUV", ["sedan", "coupe", "SUV"]),
    ("sedan; coupe; hatch-back", ["sedan", "coupe", "hatch-back"]),
    ("sedan,, ,coupe,", ["sedan", "coupe"]),
    ("", []),
    ("   \n  ", []),
    (None, []),
    ("sedan\nI hope this list of categories helps you with your task!", ["sedan"]),
]


@pytest.mark.parametrize("text,expected", PARSE_CASES)
def test_parse_names(text, expected):
    assert nb.parse_names(text) == expected


def test_name_key_folds_case_plural_and_separators():
    assert nb.name_key("Sedans") == nb.name_key("sedan") == "sedan"
    assert nb.name_key("Sports-Cars") == nb.name_key("sports car")
    assert nb.name_key("berries") == "berry" and nb.name_key("glasses") == "glass" and nb.name_key("bus") == "bus"
    assert nb.name_key("teal striped hexagons") == "teal striped hexagon"


# --- leak filter ------------------------------------------------------------------------------


def test_filter_reasons_budget_and_ids():
    classes = ["sports car", "tabby cat", "oak"]
    tax = Taxonomy({"sports car": ("vehicle",), "tabby cat": ("animal",), "oak": ("plant",)},
                   {"tabby cat": ("tiger cat",)})
    proposals = [["sedan", "Tabby Cats", "coupe", "SUV", "  "],     # budget 2
                 ["Tiger-cat", "Sedans", "persian cat"],             # synonym leak, duplicate
                 None]                                               # budget 0: not asked
    rows = nb.filter_proposals(proposals, classes, [2, 3, 0], tax, "test")
    got = [(r.target_id, r.aux_name, r.aux_id, r.status, r.reason) for r in rows]
    assert got == [
        (0, "sedan", 3, "kept", ""),
        (0, "Tabby Cats", None, "dropped", "in_label_set"),
        (0, "coupe", 4, "kept", ""),
        (0, "SUV", None, "dropped", "over_budget"),
        (0, "", None, "dropped", "empty"),
        (1, "Tiger-cat", None, "dropped", "in_label_set"),
        (1, "Sedans", None, "dropped", "duplicate_of:sports car"),
        (1, "persian cat", 5, "kept", ""),
    ]
    # the claim order decides who keeps a shared name; rows and ids stay in class order
    rows = nb.filter_proposals(proposals, classes, [2, 3, 0], tax, "test", order=[2, 1, 0])
    assert [(r.aux_name, r.aux_id, r.reason) for r in rows if r.aux_name in ("sedan", "Sedans", "persian cat")] == \
        [("sedan", None, "duplicate_of:tabby cat"), ("Sedans", 5, ""), ("persian cat", 6, "")]


# --- taxonomy and manual backends ---------------------------------------------------------------


def test_taxonomy_backend_siblings_then_cousins_seeded():
    t = Taxonomy({f"{c} {f}": ("shape", f) for f in ("star", "ring") for c in ("red", "blue", "green", "gold")})
    b = nb.TaxonomyBackend(t, seed=0, overfetch=2)
    a = b.propose("red star", 3)
    assert set(a.names[:3]) == {"blue star", "green star", "gold star"}
    assert set(a.names[3:]) <= {f"{c} ring" for c in ("red", "blue", "green", "gold")} and len(a.names) == 6
    assert a.names == nb.TaxonomyBackend(t, seed=0, overfetch=2).propose("red star", 3).names
    orders = {tuple(nb.TaxonomyBackend(t, seed=s, overfetch=2).propose("red star", 3).names) for s in range(6)}
    assert len(orders) > 1  # the seed changes the order
    missing = b.propose("purple cube", 3)
    assert missing.names == [] and missing.short == 3 and "not in the taxonomy" in missing.warning


def test_taxonomy_backend_on_world(tiny_world, tmp_path):
    w = tiny_world
    res = nb.search_neighbours(nb.TaxonomyBackend(w.taxonomy), w.class_names, w.train_counts, tmp_path,
                               k=5, ratio="0:1:1", taxonomy=w.taxonomy)
    kept = [r for r in res.rows if r.status == "kept"]
    targets, world_names = set(w.class_names), set(w.all_names)
    assert kept and all(r.aux_name in world_names and r.aux_name not in targets for r in kept)
    assert len({r.aux_name for r in kept}) == len(kept)
    for r in kept:  # every neighbour is a sibling or a cousin of its target class
        assert w.taxonomy.path(r.aux_name)[0] == w.taxonomy.path(r.target_name)[0]
    budget = aux_budget(w.train_counts, 5, "0:1:1")
    assert (budget[np.asarray(w.train_counts) > 100] == 0).all()  # 0:1:1 expands no head class
    assert not any(r.target_id in np.flatnonzero(budget == 0) for r in res.rows)
    per_class = np.bincount([r.target_id for r in kept], minlength=len(budget))
    assert (per_class <= budget).all()
    assert {r.reason.split(":")[0] for r in res.rows if r.status == "dropped"} <= {"in_label_set", "duplicate_of",
                                                                                    "over_budget"}
    nmap = nb.load_neighbour_map(res.csv_path, len(w.class_names))
    assert nmap.aux_names == [r.aux_name for r in kept] and nmap.aux_parent.shape == (len(kept),)
    assert nmap.aux_parent.tolist() == [r.target_id for r in kept] and nmap.num_classes == len(targets) + len(kept)
    # re-run: everything from the cache, same map
    again = nb.search_neighbours(nb.TaxonomyBackend(w.taxonomy), w.class_names, w.train_counts, tmp_path,
                                 k=5, ratio="0:1:1", taxonomy=w.taxonomy)
    assert again.tally.requests == 0 and again.tally.cached == int((budget > 0).sum())
    assert [(r.aux_name, r.aux_id) for r in again.rows] == [(r.aux_name, r.aux_id) for r in res.rows]
    # the paper's default ratio expands head classes too
    default = nb.search_neighbours(nb.TaxonomyBackend(w.taxonomy), w.class_names, w.train_counts, tmp_path / "d",
                                   taxonomy=w.taxonomy)
    assert (default.budget > 0).all()


def test_taxonomy_backend_on_wordnet_like_json(tmp_path):
    js = tmp_path / "tax.json"
    js.write_text(json.dumps({
        "classes": {"tabby": ["animal", "feline", "cat"], "persian cat": ["animal", "feline", "cat"],
                    "siamese cat": ["animal", "feline", "cat"], "lion": ["animal", "feline", "big cat"],
                    "tiger": ["animal", "feline", "big cat"], "beagle": ["animal", "canine", "dog"]},
        "synonyms": {"tabby": ["tabby cat", "tiger cat"], "tiger": ["panthera tigris"]}}))
    tax = Taxonomy.from_json(js)
    a = nb.TaxonomyBackend(tax).propose("tabby", 2)
    assert set(a.names[:2]) == {"persian cat", "siamese cat"} and set(a.names[2:]) == {"lion", "tiger"}
    res = nb.search_neighbours(nb.TaxonomyBackend(tax), ["tabby", "tiger"], None, tmp_path / "out", k=2, taxonomy=tax)
    kept = {(r.target_name, r.aux_name) for r in res.rows if r.status == "kept"}
    assert ("tiger", "lion") in kept and ("tabby", "tiger") not in kept
    reasons = {r.aux_name: r.reason for r in res.rows if r.status == "dropped"}
    assert reasons.get("tiger") == "in_label_set" and reasons.get("tabby") == "in_label_set"
    # a synonym is a leak too
    rows = nb.filter_proposals([["Tiger Cat", "lynx"]], ["tabby"], [2], tax)
    assert [r.reason for r in rows] == ["in_label_set", ""]
    # a disambiguated homonym ("crane (n02012849)", as from_wordnet names them) blocks the bare name
    rows = nb.filter_proposals([["Cranes", "heron"]], ["crane (n02012849)"], [2])
    assert [r.reason for r in rows] == ["in_label_set", ""]


def test_taxonomy_backend_on_real_wordnet(tmp_path):
    pytest.importorskip("nltk")
    try:  # tabby, tiger cat, Persian cat, lion, tiger
        tax = Taxonomy.from_wordnet(["n02123045", "n02123159", "n02123394", "n02129165", "n02129604"])
    except RuntimeError as e:
        pytest.skip(str(e))
    res = nb.search_neighbours(nb.TaxonomyBackend(tax), tax.classes[:2], None, tmp_path, k=2, taxonomy=tax)
    assert all(r.aux_name in tax.classes and r.aux_name not in tax.classes[:2] for r in res.rows if r.status == "kept")


def test_manual_backend_json_and_csv(tmp_path):
    js = tmp_path / "n.json"
    js.write_text(json.dumps({"Sports Car": ["sedan", "coupe"], "tabby cat": ["persian cat"]}))
    b = nb.ManualBackend(js)
    assert b.propose("sports car", 2).names == ["sedan", "coupe"]
    empty = b.propose("oak", 2)
    assert empty.names == [] and empty.short == 2 and "n.json" in empty.warning
    cv = tmp_path / "n.csv"
    cv.write_text("class,neighbour\nsports car,sedan\n# a comment\nsports car,coupe\n\ntabby cat,persian cat\n")
    assert nb.ManualBackend(cv).table == b.table
    res = nb.search_neighbours(nb.ManualBackend(cv), ["sports car", "tabby cat"], None, tmp_path / "o", k=2)
    assert [r.aux_name for r in res.rows if r.status == "kept"] == ["sedan", "coupe", "persian cat"]


@pytest.mark.parametrize("name,text,match", [
    ("bad.json", '{"a": ["x",\n  ]}', r"bad\.json: line 2"),
    ("bad.json", '{"a": "x", "b": [1]}', r"bad\.json: field 'b'\[0\]"),
    ("bad.json", '{"a": {"x": 1}}', r"bad\.json: field 'a'"),
    ("bad.json", '["a"]', r"bad\.json: expected an object"),
    ("bad.csv", "class,neighbour\na,b\nc\n", r"bad\.csv: line 3"),
    ("bad.csv", "a,b\n,d\n", r"bad\.csv: line 2"),
])
def test_manual_backend_errors_name_file_and_place(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        nb.ManualBackend(tmp_path / name)


# --- the OpenAI-compatible backend against a real HTTP server -----------------------------------


def test_openai_good_answer_cache_and_no_key_anywhere(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    classes, counts = ["sports car", "tabby cat", "oak"], [500, 50, 5]
    with FakeLLM("good", answers={"tabby cat": "persian cat, sports car, siamese cat"}) as srv:
        backend = llm(srv)
        res = nb.search_neighbours(backend, classes, counts, tmp_path, k=3, ratio="0:1:1", price_per_1k=(1.0, 2.0))
        # the two classes are asked concurrently: find tabby cat's request by its prompt, not by arrival order
        asked = {r["body"]["messages"][0]["content"]: r for r in srv.requests}
        request = asked[nb.build_prompt(nb.PAPER_TEMPLATE, "tabby cat", 3)]
        body = request["body"]
        assert request["authorization"] == f"Bearer {KEY}"  # it is sent, but only there
        assert body["temperature"] == 0 and body["seed"] == 0 and body["model"] == "fake-model"
        assert len(srv.requests) == 2  # head class "sports car" has budget 0 under 0:1:1
        s = res.summary()
        assert s["requests"] == 2 and s["tokens"] == 120 and res.tally.cost == pytest.approx((100 + 2 * 20) / 1000)
        assert s["dropped"] == {"in_label_set": 1}
        again = nb.search_neighbours(llm(srv), classes, counts, tmp_path, k=3, ratio="0:1:1")
        assert len(srv.requests) == 2 and again.tally.cached == 2 and again.tally.requests == 0
        assert [r.aux_name for r in again.rows] == [r.aux_name for r in res.rows]
        # another template is another question: asked again, and recorded
        custom = "List {K} kinds of {CLS}."
        nb.search_neighbours(llm(srv, template=custom), classes, counts, tmp_path, k=3, ratio="0:1:1")
        assert len(srv.requests) == 4
    rows = [json.loads(line) for line in (tmp_path / "llm_cache.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["template"] for r in rows} == {nb.PAPER_TEMPLATE, custom}
    r = rows[0]
    assert r["backend"] == "openai" and r["model"] == "fake-model" and r["usage"]["total_tokens"] == 60
    assert r["raw"] and r["names"] and r["prompt"] and r["time"] and r["short"] == 0 and r["params"]["seed"] == 0
    print(repr(backend), res.format_summary())
    out = capsys.readouterr()
    assert KEY not in out.out + out.err + caplog.text + repr(backend)
    assert_no_key(tmp_path)


def test_openai_messy_answer_is_parsed_and_short_is_reported(tmp_path):
    with FakeLLM("messy") as srv:
        res = nb.search_neighbours(llm(srv), ["pickup truck"], None, tmp_path, k=5)
    a = res.answers[0]
    assert a.names == ["Flatbeds", "Tow truck", "Ute", "box truck"] and a.short == 1 and "4 of 5" in a.warning
    assert any("4 of 5" in w for w in res.warnings)
    assert json.loads((tmp_path / "llm_cache.jsonl").read_text())["short"] == 1


def test_openai_empty_answer_is_reported_not_silent(tmp_path):
    with FakeLLM("empty") as srv:
        res = nb.search_neighbours(llm(srv), ["oak"], None, tmp_path, k=5)
    assert res.answers[0].names == [] and "empty answer" in res.answers[0].warning
    assert res.summary()["under_budget"] == 1 and len(res.warnings) == 2


def test_openai_retries_429_then_succeeds(tmp_path, caplog):
    with FakeLLM("rate_limit_once") as srv:
        a = llm(srv).propose("oak", 5)
        assert len(srv.requests) == 2 and len(a.names) == 5
    assert "RateLimitError" in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize("mode,match,attempts", [
    ("error_500", r"gave up after 3 attempts: InternalServerError", 3),
    ("rate_limit", r"gave up after 3 attempts: RateLimitError", 3),
    ("unauthorized", r"HTTP 401.*check OPENAI_API_KEY", 1),
    ("garbage", r"not a chat completion", 1),
])
def test_openai_failures_are_clear_errors(tmp_path, mode, match, attempts):
    with FakeLLM(mode) as srv:
        with pytest.raises(nb.NeighbourSearchError, match=match) as e:
            nb.search_neighbours(llm(srv), ["oak"], None, tmp_path, k=5)
        assert len(srv.requests) == attempts
    assert "'oak'" in str(e.value) and KEY not in str(e.value)
    assert not (tmp_path / "llm_cache.jsonl").exists()  # failures are not cached: a re-run asks again


def test_openai_timeout_then_success_and_timeout_error(tmp_path):
    # a good answer takes milliseconds, under load a few hundred: the 1.5 s timeout only ever cuts the 10 s ones
    with FakeLLM("slow", delay=10.0) as srv:
        srv.script = ["slow", "good"]
        assert len(llm(srv, timeout=1.5).propose("oak", 5).names) == 5 and len(srv.requests) == 2
        with pytest.raises(nb.NeighbourSearchError, match="APITimeoutError"):
            llm(srv, timeout=1.5, retries=1).propose("oak", 5)
        assert len(srv.requests) == 4


def test_openai_connection_refused_and_missing_key(monkeypatch):
    with pytest.raises(nb.NeighbourSearchError, match="APIConnectionError"):
        nb.OpenAIBackend("m", "http://127.0.0.1:1/v1", api_key=KEY, retries=1, backoff=0.01).propose("oak", 5)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(nb.NeighbourSearchError, match="set OPENAI_API_KEY.*dummy"):
        nb.OpenAIBackend("m", "http://127.0.0.1:1/v1")


def test_openai_key_and_base_url_from_env(monkeypatch, tmp_path):
    with FakeLLM("good") as srv:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        b = nb.OpenAIBackend("m", retries=0)
        assert b.base_url.startswith(srv.url) and len(b.propose("oak", 5).names) == 5
        assert srv.requests[0]["authorization"] == f"Bearer {KEY}"


# --- the neighbour map --------------------------------------------------------------------------


HEADER = "target_id,target_name,aux_name,aux_id,backend,status,reason\n"


@pytest.mark.parametrize("body,match", [
    ("", None),
    ("0,a,x,2,t,kept,\n0,a,y,,t,dropped,over_budget\n1,b,z,3,t,kept,\n", None),
    ("0,a,x,3,t,kept,\n", r"aux_id must be exactly 2\.\.2"),
    ("0,a,x,1,t,kept,\n", r"line 2: field aux_id: 1 is a target id"),
    ("0,a,x,2,t,kept,\n1,b,x,3,t,kept,\n", r"line 3: field aux_name: 'x' duplicates line 2"),
    ("5,a,x,2,t,kept,\n", r"line 2: field target_id: 5 outside 0\.\.1"),
    ("zero,a,x,2,t,kept,\n", r"line 2: field target_id: not an integer"),
    ("0,a,x,2,t,maybe,\n", r"line 2: field status"),
    ("0,a,x,2,t,kept\n", r"line 2: expected 7 fields"),
    ("0,a,x,2,t,dropped,in_label_set\n", r"line 2: field aux_id: must be empty"),
    ("0,a,x,2,t,kept,\n0,b,y,3,t,kept,\n", r"line 3: field target_name"),
])
def test_load_neighbour_map_validates(tmp_path, body, match):
    p = tmp_path / "neighbours.csv"
    p.write_text(HEADER + body)
    if match is None:
        m = nb.load_neighbour_map(p, 2)
        assert m.num_aux == len(m.aux_parent) and m.aux_parent.dtype == np.int64
        return
    with pytest.raises(ValueError, match=match) as e:
        nb.load_neighbour_map(p, 2)
    assert str(p) in str(e.value)


def test_load_neighbour_map_bad_header_and_missing(tmp_path):
    (tmp_path / "n.csv").write_text("a,b,c\n")
    with pytest.raises(ValueError, match=r"n\.csv: line 1: expected header"):
        nb.load_neighbour_map(tmp_path / "n.csv", 2)
    with pytest.raises(FileNotFoundError, match="python -m ltkit neighbours"):
        nb.load_neighbour_map(tmp_path / "none.csv", 2)


# --- command line -------------------------------------------------------------------------------


def test_cli_world_preset(tiny_world, tmp_path, capsys):
    from ltkit.cli import main

    assert main(["neighbours", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "aux_ratio=1:1:3",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "classes expanded: 24 of 24" in out and "dropped:" in out and "tokens:" in out
    with open(tmp_path / "neighbours.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == nb.CSV_COLUMNS
    assert nb.load_neighbour_map(tmp_path / "neighbours.csv", 24).num_aux > 0


def test_cli_writes_where_training_reads(tiny_world, tmp_path):
    """Without --out the map goes to the folder the trainer looks in for the same config."""
    from ltkit.artifacts.layout import neighbour_map_path
    from ltkit.config import load_config
    from ltkit.neighbours.cli import main

    over = ["dataset=builtin-tiny", "k=2", "many=40", f"out_dir={tmp_path}"]
    assert main(over) == 0
    assert neighbour_map_path(load_config(None, over)).exists()
    assert not neighbour_map_path(load_config(None, over[:-2] + ["many=30", f"out_dir={tmp_path}"])).exists()


def test_cli_openai_manual_taxonomy_and_errors(tmp_path, capsys, monkeypatch):
    from ltkit.cli import main

    classes = tmp_path / "classes.txt"
    classes.write_text("lynx,500\ntabby,50\ntiger,5\n")
    tax = tmp_path / "tax.json"
    Taxonomy({"lynx": ("wild cat",), "tabby": ("cat",), "persian": ("cat",), "tiger": ("big cat",),
              "lion": ("big cat",)}).to_json(tax)
    cls = f"neighbours.classes_file={classes}"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeLLM("good") as srv:
        rc = main(["neighbours", "neighbours.backend=openai", "neighbours.model=m", f"neighbours.base_url={srv.url}",
                   cls, "aux_ratio=0:1:1", "--out", str(tmp_path / "llm"), "neighbours.price_per_1k=0.5"])
        assert rc == 0 and len(srv.requests) == 2
    assert "tokens: 120" in capsys.readouterr().out
    manual = tmp_path / "m.csv"
    manual.write_text("tabby,persian\ntiger,lion\n")
    assert main(["neighbours", "neighbours.backend=manual", f"neighbours.file={manual}", cls,
                 "--out", str(tmp_path / "man")]) == 0
    assert main(["neighbours", "neighbours.backend=taxonomy", f"neighbours.taxonomy_json={tax}", cls,
                 "k=1", "--out", str(tmp_path / "tax")]) == 0
    assert nb.load_neighbour_map(tmp_path / "tax" / "neighbours.csv", 3).aux_names == ["persian", "lion"]
    capsys.readouterr()
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["neighbours", "neighbours.backend=openai", "neighbours.model=m", cls, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "set OPENAI_API_KEY" in err and err.count("\n") == 1
    assert main(["neighbours", "neighbours.backend=manual", cls]) == 2
    assert "neighbours.file" in capsys.readouterr().err
    assert_no_key(tmp_path)


# --- notebook 02 --------------------------------------------------------------------------------


@pytest.mark.slow
def test_notebook_runs_on_tiny_world(tiny_world, tiny_encoder, world_cache, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    src = ROOT / "notebooks" / "02_neighbour_crawl.ipynb"
    nbk = nbformat.read(src, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in nbk.cells if c.cell_type == "code")
    idx = next(i for i, c in enumerate(nbk.cells) if "parameters" in c.metadata.get("tags", []))
    out_dir = tmp_path / "crawl" / "tiny"  # the notebook resolves relative paths against the repository
    nbk.cells.insert(idx + 1, nbformat.v4.new_code_cell(f'preset = "builtin-tiny"\nout_dir = {str(out_dir)!r}'))
    with FakeLLM("good") as srv:  # the optional LLM cell, against the fake server, key from the environment
        monkeypatch.setenv("LTKIT_CACHE", str(world_cache))
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("LTKIT_LLM_MODEL", "fake-model")
        NotebookClient(nbk, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
        assert len(srv.requests) > 0
    out = tmp_path / "crawl" / "tiny"
    assert (out / "neighbours.csv").exists() and (out / "llm_cache.jsonl").exists()
    assert (tmp_path / "crawl" / "tiny-llm" / "neighbours.csv").exists()
    text = nbformat.writes(nbk)
    assert "classes expanded" in text and "over_budget" in text and KEY not in text
    assert_no_key(tmp_path)
