"""Neighbour search against the local fake server: JSON mode and its fallback, concurrent requests with
one cache, warnings that say why, and neighbour maps checked against the dataset's class names."""
import csv
import json
import logging

import pytest

from fake_llm import FakeLLM
from ltkit.artifacts.neighbour_map import load_neighbour_map, read_classes
from ltkit.data.classnames import read_class_names, same_class
from ltkit.neighbours.backends import OpenAIBackend
from ltkit.neighbours.search import search_neighbours

KEY = "sk-test-SECRET-5e1d20"


def llm(srv: FakeLLM, **kw) -> OpenAIBackend:
    kw = {"api_key": KEY, "timeout": 5.0, "retries": 1, "backoff": 0.01, **kw}
    return OpenAIBackend("fake-model", srv.url, **kw)


def cache_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- structured output ---------------------------------------------------------------------------


def test_json_mode_asks_for_a_schema_and_records_it(tmp_path):
    with FakeLLM() as srv:
        res = search_neighbours(llm(srv, structured=True), ["lighthouse", "harbour"], None, tmp_path, k=3)
        again = search_neighbours(llm(srv, structured=True), ["lighthouse", "harbour"], None, tmp_path, k=3)
    for r in srv.requests:
        fmt = r["body"]["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["names"]
        assert r["body"]["messages"][0]["content"].startswith("Task: Given a category name")  # the paper's prompt
    assert res.answers[0].names == ["small lighthouse", "large lighthouse", "antique lighthouse"]
    assert res.answers[0].mode == "json" and json.loads(res.answers[0].raw)["names"]
    rows = cache_rows(tmp_path / "llm_cache.jsonl")
    assert [(r["mode"], r["params"]["response_format"]) for r in rows] == [("json", "json_schema")] * 2
    assert len(srv.requests) == 2 and again.tally.cached == 2 and again.answers[1].mode == "json"


def test_json_mode_falls_back_to_the_prompt_once(tmp_path, caplog):
    with FakeLLM(structured="unsupported") as srv, caplog.at_level(logging.WARNING):
        res = search_neighbours(llm(srv, structured=True), ["lighthouse", "harbour", "pier"], None, tmp_path, k=3,
                                workers=1)
    with_format = [r for r in srv.requests if "response_format" in r["body"]]
    assert len(with_format) == 1 and len(srv.requests) == 4  # refused once, then the prompt alone
    assert all(a.mode == "text" and len(a.names) == 3 for a in res.answers.values())
    assert "refused response_format" in caplog.text and KEY not in caplog.text


def test_a_server_that_ignores_the_format_is_read_as_text(tmp_path):
    with FakeLLM(structured="ignored") as srv:
        res = search_neighbours(llm(srv, structured=True), ["lighthouse"], None, tmp_path, k=3)
    assert res.answers[0].mode == "text" and res.answers[0].names[0] == "small lighthouse"


def test_refusals_and_copies_yield_fewer_names_and_say_why(tmp_path):
    answers = {"lighthouse": "sedan, SUV, luxury car, electric car",
               "harbour": "I'm sorry, but I can't help with that request.",
               "pier": "<think>piers are walkways</think>\nboardwalk, jetty. These are all structures over water."}
    with FakeLLM(answers=answers) as srv:
        res = search_neighbours(llm(srv), list(answers), None, tmp_path, k=3)
    names = {a.class_name: (a.names, a.warning) for a in res.answers.values()}
    assert names["lighthouse"][0] == [] and "example" in names["lighthouse"][1]
    assert names["harbour"][0] == [] and "refusal" in names["harbour"][1]
    assert names["pier"][0] == ["boardwalk", "jetty"] and "prose" in names["pier"][1]
    kept = {r.aux_name for r in res.rows if r.status == "kept"}
    assert kept == {"boardwalk", "jetty"}  # nothing of the refusal or the copied example became a category


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_requests_hit_the_server_once_per_class(tmp_path):
    classes = [f"class {i}" for i in range(12)]
    with FakeLLM("slow", delay=0.2) as srv:
        res = search_neighbours(llm(srv), classes + ["class 3"], None, tmp_path, k=2, workers=4)
        asked = [r["body"]["messages"][0]["content"].rsplit("Query: ", 1)[1].split("\n")[0] for r in srv.requests]
        assert sorted(asked) == sorted(classes)  # a repeated class name is asked once
        assert 2 <= srv.peak <= 4  # really concurrent, and bounded
        again = search_neighbours(llm(srv), classes, None, tmp_path, k=2, workers=4)
    assert len(srv.requests) == len(classes) and again.tally.requests == 0 and again.tally.cached == len(classes)
    assert res.tally.requests == len(classes)
    rows = cache_rows(tmp_path / "llm_cache.jsonl")
    assert sorted(r["class_name"] for r in rows) == sorted(classes)  # one cache line per class
    assert res.answers[12].names == res.answers[3].names  # the repeat shares the answer
    # the map is the same whatever order the answers arrived in
    assert [r.aux_name for r in res.rows if r.status == "kept"][:2] == ["small class 0", "large class 0"]
    assert KEY not in (tmp_path / "llm_cache.jsonl").read_text()


def test_a_failure_stops_the_search_and_keeps_what_was_answered(tmp_path):
    with FakeLLM("slow", delay=0.05) as srv:
        srv.script = ["slow"] * 3 + ["unauthorized"] * 20
        with pytest.raises(Exception, match="HTTP 401") as err:
            search_neighbours(llm(srv), [f"c{i}" for i in range(20)], None, tmp_path, k=2, workers=2)
    assert KEY not in str(err.value)
    assert 1 <= len(cache_rows(tmp_path / "llm_cache.jsonl")) <= 3


# --- class names and the neighbour map ---------------------------------------------------------


def write_map(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target_id", "target_name", "aux_name", "aux_id", "backend", "status", "reason"])
        w.writerows(rows)
    return path


def test_map_rows_must_name_the_datasets_classes(tmp_path):
    names = ["tabby, tabby cat", "tiger cat", "Persian cat"]
    good = write_map(tmp_path / "good.csv", [[0, "tabby", "calico cat", 3, "m", "kept", ""],
                                             [1, "tiger cat", "ocelot", 4, "m", "kept", ""],
                                             [2, "persian cats", "himalayan cat", "", "m", "dropped", "over_budget"]])
    nmap = load_neighbour_map(good, 3, names)
    assert nmap.aux_parent.tolist() == [0, 1]
    # the same map written in another class order: the first wrong row fails, with its line
    bad = write_map(tmp_path / "bad.csv", [[0, "tabby", "calico cat", 3, "m", "kept", ""],
                                           [1, "Persian cat", "himalayan cat", 4, "m", "kept", ""],
                                           [2, "tiger cat", "ocelot", 5, "m", "kept", ""]])
    with pytest.raises(ValueError, match=r"bad.csv: line 3: field target_name: 'Persian cat' is not class 1 "
                                         r"of the dataset, 'tiger cat'"):
        load_neighbour_map(bad, 3, names)
    assert load_neighbour_map(bad, 3).num_aux == 3  # without names only the ids are checked
    with pytest.raises(ValueError, match="no class names"):
        load_neighbour_map(bad, 3, ["0", "1", "2"])


def test_class_name_files(tmp_path):
    plain = tmp_path / "classnames.txt"
    plain.write_text("tench, Tinca tinca\ngoldfish, Carassius auratus\n\n# comment\ntabby, tabby cat\n")
    assert read_class_names(plain) == ["tench, Tinca tinca", "goldfish, Carassius auratus", "tabby, tabby cat"]
    wnid = tmp_path / "LOC_synset_mapping.txt"
    wnid.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    assert read_class_names(wnid, 2) == ["tench, Tinca tinca", "goldfish, Carassius auratus"]
    places = tmp_path / "categories_places365.txt"
    places.write_text("/a/airfield 0\n/a/apartment_building/outdoor 1\n")
    assert read_class_names(places) == ["airfield", "apartment building (outdoor)"]
    places.write_text("/a/airfield 0\n/a/alley 2\n")
    with pytest.raises(ValueError, match="line 2: index 2 but this is class 1"):
        read_class_names(places)
    plain.write_text("tabby\ntabbies\n")
    with pytest.raises(ValueError, match="line 2: class name 'tabbies' repeats line 1"):
        read_class_names(plain)
    with pytest.raises(ValueError, match="3 class names, but the dataset has 2"):
        read_class_names(_write(tmp_path / "y.txt", "a\nb\nc\n"), 2)
    assert same_class("tabby", "tabby, tabby cat") and not same_class("tiger cat", "tabby, tabby cat")


def _write(path, text):
    path.write_text(text)
    return path


def test_classes_file_accepts_imagenet_style_lines(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("tabby, tabby cat\ntiger cat\n")
    assert read_classes(f) == (["tabby, tabby cat", "tiger cat"], None)
    f.write_text("tabby, tabby cat,12\ntiger cat,3\n")
    assert read_classes(f) == (["tabby, tabby cat", "tiger cat"], [12, 3])
    f.write_text("tabby,12\ntiger cat\n")
    with pytest.raises(ValueError, match="every line or none"):
        read_classes(f)


def test_imagenet_lt_names_come_from_its_class_file_and_the_trainer_checks_the_map(tmp_path):
    from PIL import Image

    from ltkit.auxiliary import build_aux
    from ltkit.config import load_config
    from ltkit.data.datasets import build_target_data

    root = tmp_path / "imagenet_lt"
    wnids = ["n02123045", "n02123159", "n02123394"]
    for split, per_class in (("train", 2), ("val", 1), ("test", 1)):
        lines = []
        for y, w in enumerate(wnids):
            for i in range(per_class):
                rel = f"{split}/{w}/{w}_{i}.JPEG"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (60 * y, 0, 0)).save(root / rel)
                lines.append(f"{rel} {y}")
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("\n".join(f"{w} {n}" for w, n in zip(
        wnids, ["tabby, tabby cat", "tiger cat", "Persian cat"])) + "\n")
    bad = write_map(tmp_path / "other_order.csv", [[0, "tabby", "calico cat", 3, "m", "kept", ""],
                                                   [1, "Persian cat", "himalayan cat", 4, "m", "kept", ""]])
    cfg = load_config(None, {"dataset": "imagenet-lt", "data_root": str(root), "aux": "neighbours",
                             "neighbours_csv": str(bad), "aux_images": str(tmp_path)})
    data, _ = build_target_data(cfg)
    assert data.class_names == ["tabby, tabby cat", "tiger cat", "Persian cat"]
    with pytest.raises(ValueError, match="other_order.csv: line 3: field target_name: 'Persian cat' is not class 1"):
        build_aux(cfg, data, None)
