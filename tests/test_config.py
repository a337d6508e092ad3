"""The one config: presets, sections, dotted overrides, errors that name the key and file, the recipe."""
from pathlib import Path

import pytest

from ltkit.artifacts.layout import neighbour_dir
from ltkit.config import Config, ConfigError, NeighbourConfig, config_yaml, load_config, recipe
from ltkit.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def test_every_preset_loads_into_one_config():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert isinstance(cfg, Config) and isinstance(cfg.neighbours, NeighbourConfig), path


def test_sections_from_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("k: 3\naux_ratio: 1:1:3\nneighbours: {backend: openai, model: m}\ncrawl:\n  concurrency: 2\n")
    cfg = load_config(p, ["neighbours.model=gpt-4o-mini", "crawl.concurrency=4", "many=50"])
    assert (cfg.k, cfg.aux_ratio, cfg.many) == (3, "1:1:3", 50)
    assert cfg.neighbours.backend == "openai" and cfg.neighbours.model == "gpt-4o-mini" and cfg.crawl.concurrency == 4
    # dict overrides: dotted or nested; a string field keeps a number-looking value as text
    cfg = load_config(None, {"neighbours.model": "m2", "crawl": {"concurrency": 1}})
    assert cfg.neighbours.model == "m2" and cfg.crawl.concurrency == 1
    assert load_config(None, ["neighbours.model=001"]).neighbours.model == "001"


def test_written_config_reads_back(tmp_path):
    cfg = load_config(None, ["neighbours.backend=manual", "neighbours.file=x.csv", "betas=[0.9,0.99]"])
    (tmp_path / "c.yaml").write_text(config_yaml(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("overrides,match", [
    (["lossx=1"], "'lossx'"),
    (["crawl.nope=1"], r"'crawl\.nope'.*known in crawl"),
    (["loss.x=1"], "not a section"),
    (["neighbours=3"], "expected a mapping"),
    (["epochs"], "key=value"),
])
def test_bad_keys_are_user_errors_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("neighbours:\n  backnd: openai\n")
    with pytest.raises(UserError, match=r"bad\.yaml: unknown config key 'neighbours\.backnd'"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="none.yaml"):
        load_config(tmp_path / "none.yaml")


def test_recipe_leaves_out_run_only_settings_and_reads_old_files():
    a = load_config(None, ["name=a", "progress=false", "classifier=crt", "neighbours.timeout=5", "crawl.concurrency=1"])
    b = load_config(None, ["name=b"])
    assert recipe(a) == recipe(b) and "neighbours.backend" not in recipe(a)  # aux=none reads no map
    assert "neighbours.backend" in recipe(load_config(None, ["aux=neighbours"]))
    assert recipe(load_config(None, ["loss=ce"])) != recipe(b)
    old = {**{k: v for k, v in recipe(b).items() if "." not in k}, "extra": {}}  # a checkpoint from before sections
    assert recipe(old) == recipe(b)


def test_neighbour_map_path_follows_the_shared_settings():
    base = neighbour_dir(load_config(None))
    for over in (["k=3"], ["aux_ratio=0:1:1"], ["many=50"], ["few=10"], ["seed=1"], ["neighbours.backend=openai"],
                 ["neighbours.model=m", "neighbours.backend=openai"]):
        assert neighbour_dir(load_config(None, over)) != base, over
    assert neighbour_dir(load_config(None, ["epochs=3"])) == base
    assert neighbour_dir(load_config(None, ["neighbours.out_dir=crawl/x"])) == Path("crawl/x")


def _changed(value):
    """Another value of the same type (the recipe does not validate, so any value of the type will do)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, (list, tuple)):
        return list(value)[:-1] or [7]
    return f"{value}-other"


def _every_change(cfg, section: str):
    """`cfg` with each field of `section` (or each run_only top-level field) changed, one at a time."""
    import dataclasses
    if section == "top":
        for f in dataclasses.fields(cfg):
            if f.metadata.get("run_only"):
                yield f.name, dataclasses.replace(cfg, **{f.name: _changed(getattr(cfg, f.name))})
        return
    sec = getattr(cfg, section)
    for f in dataclasses.fields(sec):
        yield f"{section}.{f.name}", dataclasses.replace(cfg, **{section: dataclasses.replace(
            sec, **{f.name: _changed(getattr(sec, f.name))})})


@pytest.mark.parametrize("base, unused", [
    (["aux=none"], ["top", "neighbours", "crawl", "filter", "pilot"]),
    (["aux=neighbours"], ["top", "crawl", "filter", "pilot"]),                     # the world's pool: no crawl
    (["aux=neighbours", "neighbours_csv=m.csv", "aux_images=a/accepted.csv"], ["top", "neighbours", "crawl", "pilot"]),
    (["aux=random", "aux_images=crawl"], ["top", "pilot"]),
])
def test_run_name_and_resume_ignore_every_setting_training_does_not_read(base, unused):
    from ltkit.report import run_name
    cfg = load_config(None, base)
    for section in unused:
        for key, other in _every_change(cfg, section):
            if key in ("name", "out_dir", "seed"):  # the run's own name and folder; the seed is in the name
                continue
            assert recipe(other) == recipe(cfg), key
            assert run_name(other, {}, 0) == run_name(cfg, {}, 0), key


def test_every_setting_training_reads_changes_the_recipe():
    cfg = load_config(None, ["aux=neighbours", "aux_images=crawl"])
    for section in ("neighbours", "crawl", "filter"):
        for key, other in _every_change(cfg, section):
            if key in recipe(cfg):
                assert recipe(other) != recipe(cfg), key
    assert {"neighbours.backend", "crawl.region", "filter.gamma1"} <= set(recipe(cfg))
