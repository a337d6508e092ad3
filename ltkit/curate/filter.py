"""Filtering a crawl (paper Sec. 3.1): caption match, similarity window, and the test-leak check.

An image crawled for auxiliary class a (queried from target class t) is kept when
- its caption names a (`caption_mode`: the exact phrase, all its words in any order, or off), with
  captions and names normalised as the neighbour search normalises names (`name_key` per word);
- gamma1 < cos(p_t, f) < gamma2, p_t the mean feature of t's training images (an auxiliary class has
  no target images, so the prototype is its parent's). The window keeps images similar to the class
  without being copies of it;
- it is no near-duplicate of a target val or test image (`ltkit.curate.leak`);
unless a curator flipped its decision by hand (`ltkit.curate.overrides`, `overrides.jsonl`), which wins.

Everything expensive (features, hashes, nearest references) is computed once into `FilterScores`;
`decide` applies thresholds in microseconds, which is what the tuner does on every slider move.
`filter_crawl` does both for a config, the one call the command and notebook 02 make.
Outputs next to the crawl's manifest: `filter_manifest.jsonl` (every image, its numbers, each check
and the reason), `accepted.csv` + `accepted_neighbours.csv` (the auxiliary dataset the trainer
reads: images, labels L..L+K'-1, the neighbour map of the classes that kept images) and
`filter.json` (thresholds and provenance: time, encoder, counts, the overrides counted apart).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ltkit.artifacts import layout
from ltkit.artifacts.accepted import ACCEPTED_COLUMNS, load_settings
from ltkit.artifacts.layout import ACCEPTED, ACCEPTED_MAP, FILTER_JSON, FILTER_MANIFEST, MANIFEST
from ltkit.artifacts.manifest import inside, manifest_files, read_manifest
from ltkit.artifacts.neighbour_map import CSV_COLUMNS as NEIGHBOUR_COLUMNS
from ltkit.config import Config, FilterConfig
from ltkit.curate.leak import LeakScores, leak_scores, phash
from ltkit.curate.overrides import OVERRIDES, Override, match_overrides, read_overrides
from ltkit.data import FileImages, LTData
from ltkit.data.datasets import build_target_data
from ltkit.encoder import Encoder, build_encoder, encode_cached, feature_cache_dir
from ltkit.errors import UserError
from ltkit.features import prototypes
from ltkit.io import atomic_write_text, write_json
from ltkit.words import CAPTION_MODES, caption_match, name_key

REQUIRED = ("key", "aux_id", "aux_name", "target_id", "target_name", "caption", "status", "path", "sha256")


# ---------------------------------------------------------------------------------------------
# captions


# ---------------------------------------------------------------------------------------------
# the crawl's images


def read_crawl(crawl_dir: str | Path) -> list[dict]:
    """Downloaded images of a crawl (the final row of each key, all shards, status ok), checked."""
    if not manifest_files(crawl_dir):
        raise FileNotFoundError(f"{Path(crawl_dir) / MANIFEST}: no crawl manifest (run `python -m ltkit crawl` first)")
    everything = read_manifest(crawl_dir)
    rows = [r for r in everything if r.get("status") == "ok"]
    where = Path(crawl_dir) / MANIFEST
    if not rows:
        raise UserError(f"{where}: no downloaded image to filter ({len(everything)} rows, none ok)")
    for row in rows:
        missing = [f for f in REQUIRED if f != "caption" and row.get(f) in (None, "")]  # empty captions are data
        if "target_id" in missing and row.get("engine") == "urls":
            raise UserError(f"{where}: key {row['key']}: a --urls crawl without a target column; give the URL list a "
                            "target column (the target class each auxiliary class was queried from) and crawl again")
        if missing:
            raise UserError(f"{where}: key {row['key']}: field {missing[0]}: missing on a downloaded row")
        if inside(crawl_dir, row["path"]) is None:
            raise UserError(f"{where}: key {row['key']}: field path: {row['path']!r} leaves the crawl folder")
    return rows


def crawl_images(crawl_dir: str | Path, rows: list[dict]) -> FileImages:
    """The rows' image files (labels = auxiliary ids)."""
    return FileImages(crawl_dir, [r["path"] for r in rows], [int(r["aux_id"]) for r in rows])


# ---------------------------------------------------------------------------------------------
# scores (computed once) and decisions (any thresholds)


@dataclass
class FilterScores:
    """Threshold-free numbers of every downloaded image of a crawl."""

    crawl_dir: Path
    rows: list[dict]
    caption: dict[str, np.ndarray]  # mode -> (N,) bool
    cos: np.ndarray                 # (N,) cos(p_parent, f)
    leak: LeakScores
    encoder: str
    encoder_key: str
    num_targets: int

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def aux_ids(self) -> np.ndarray:
        return np.array([int(r["aux_id"]) for r in self.rows], np.int64)

    @property
    def truth(self) -> list[str] | None:
        """The built-in world's noise kind of each item, when the manifest carries it."""
        t = [r.get("truth") for r in self.rows]
        return t if all(t) else None


def score_crawl(crawl_dir: str | Path, target: LTData, encoder: Encoder | str = "pool", world=None,
                cache_dir: str | Path | None = None, leak_splits: Sequence[str] = ("val", "test"),
                rows: list[dict] | None = None) -> FilterScores:
    """Encode the crawl and the target data (cached by content hash) and compute every filter number."""
    crawl_dir = Path(crawl_dir)
    rows = read_crawl(crawl_dir) if rows is None else rows
    if isinstance(encoder, str):
        encoder = build_encoder(encoder, world)
    cache = Path(cache_dir) if cache_dir is not None else feature_cache_dir()
    images = crawl_images(crawl_dir, rows)
    feats = encode_cached(encoder, images, cache, keys=[r["sha256"] for r in rows])
    train_feats = encode_cached(encoder, target.train, cache)
    protos = prototypes(train_feats, target.train.labels, target.num_classes)
    parent = np.array([int(r["target_id"]) for r in rows], np.int64)
    bad = parent[(parent < 0) | (parent >= target.num_classes)]
    if len(bad):
        raise UserError(f"{crawl_dir / MANIFEST}: target_id {bad[0]} outside 0..{target.num_classes - 1}")
    cos = (np.einsum("nc,nc->n", _unit(feats), _unit(protos[parent])) if len(rows)
           else np.zeros(0, np.float32))
    refs = [(s, getattr(target, s)) for s in leak_splits if getattr(target, s, None) is not None]
    ref_sets = [r for _, r in refs]
    ref_split = np.concatenate([[s] * len(r) for s, r in refs]) if refs else np.zeros(0, str)
    ref_index = np.concatenate([np.arange(len(r)) for r in ref_sets]) if refs else np.zeros(0, np.int64)
    ref_feats = (np.concatenate([encode_cached(encoder, r, cache) for r in ref_sets]) if refs
                 else np.zeros((0, feats.shape[1]), np.float32))
    ref_hash = np.concatenate([phash(r) for r in ref_sets]) if refs else np.zeros(0, np.uint64)
    ref_mirror = np.concatenate([phash(r, mirror=True) for r in ref_sets]) if refs else np.zeros(0, np.uint64)
    leak = leak_scores(phash(images), feats, ref_hash, ref_mirror, ref_feats, ref_split, ref_index, encoder.device)
    caption = {m: np.array([caption_match(r.get("caption") or "", r["aux_name"], m) for r in rows], bool)
               for m in CAPTION_MODES}
    return FilterScores(crawl_dir, rows, caption, cos.astype(np.float32), leak, encoder.spec, encoder.key,
                        target.num_classes)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Decisions:
    """Each check's outcome per image under one setting, the curator's overrides, and why an image was dropped."""

    caption_ok: np.ndarray
    above_gamma1: np.ndarray
    below_gamma2: np.ndarray
    leak: np.ndarray
    leak_split: list[str]
    settings: FilterConfig
    overrides: dict[int, Override] = field(default_factory=dict)  # row index -> manual decision

    @property
    def window_ok(self) -> np.ndarray:
        return self.above_gamma1 & self.below_gamma2

    @property
    def auto_keep(self) -> np.ndarray:
        """What the thresholds alone keep."""
        return self.caption_ok & self.window_ok & ~self.leak

    @property
    def keep(self) -> np.ndarray:
        """The thresholds' decision, with each override in force replacing it."""
        k = self.auto_keep
        for i, o in self.overrides.items():
            k[i] = o.decision == "keep"
        return k

    def override_counts(self) -> dict:
        """Overrides in force: kept / dropped by hand, and how many of them differ from the thresholds now."""
        auto = self.auto_keep
        keep = [i for i, o in self.overrides.items() if o.decision == "keep"]
        drop = [i for i, o in self.overrides.items() if o.decision == "drop"]
        return dict(keep=len(keep), drop=len(drop), changed=int((~auto[keep]).sum() + auto[drop].sum()))

    def reasons(self) -> list[str]:
        """'' for a kept image, 'override' for one dropped by hand, else every failed check joined by '+'."""
        out = []
        for i, (k, c, a, b, lk, s) in enumerate(zip(self.keep, self.caption_ok, self.above_gamma1, self.below_gamma2,
                                                    self.leak, self.leak_split)):
            if k or i in self.overrides:
                out.append("" if k else "override")
                continue
            out.append("+".join(r for r, bad in (("caption", not c), ("gamma1", not a), ("gamma2", not b),
                                                  (f"leak:{s}", lk)) if bad))
        return out


def decide(scores: FilterScores, settings: FilterConfig, overrides: dict[str, Override] | None = None) -> Decisions:
    """Apply thresholds to precomputed scores (no features are touched), then the curator's `overrides` (by key)."""
    s = settings.check()
    leak = scores.leak.flagged(s.leak_hamming, s.leak_cos)
    return Decisions(scores.caption[s.caption_mode], scores.cos > s.gamma1, scores.cos < s.gamma2, leak,
                     scores.leak.split_of(s.leak_hamming, s.leak_cos), s, match_overrides(scores.rows, overrides or {}))


def filter_crawl(crawl_dir: str | Path | None, cfg: Config, thresholds: str = "saved"
                 ) -> tuple[FilterScores, Decisions, FilterConfig]:
    """The filter stage on a crawl (default: the config's): every image scored, then decided; nothing is written.

    `thresholds="saved"`: the settings saved beside the crawl (`filter.json`, by the tuner or the command)
    win over the config's, as in the notebook; `"config"`: the config's alone, as the command and training
    need. A curator's clicks (`overrides.jsonl`) win over both. Returns the scores, the decisions and the
    settings they were made with.
    """
    if thresholds not in ("saved", "config"):
        raise ValueError(f"thresholds={thresholds!r}: expected 'saved' or 'config'")
    root = Path(crawl_dir) if crawl_dir is not None else layout.crawl_dir(cfg)
    settings = cfg.filter.check()
    if thresholds == "saved":
        settings = load_settings(root) or settings
    target, world = build_target_data(cfg)
    encoder = build_encoder(settings.encoder, world, batch_size=settings.batch_size)
    scores = score_crawl(root, target, encoder, world=world, leak_splits=settings.leak_splits)
    return scores, decide(scores, settings, read_overrides(root)), settings


def class_counts(scores: FilterScores, d: Decisions) -> dict[int, dict]:
    """Per auxiliary id: name, parent, total, caption_ok, window_ok, leak, kept (vectorised: the tuner calls it often)."""
    ids, first, inv = np.unique(scores.aux_ids, return_index=True, return_inverse=True)
    n = len(ids)
    cols = {k: np.bincount(inv, weights=v, minlength=n).astype(int)
            for k, v in (("total", np.ones(len(inv))), ("caption_ok", d.caption_ok), ("window_ok", d.window_ok),
                         ("leak", d.leak), ("kept", d.keep))}
    return {int(a): dict(name=scores.rows[f]["aux_name"], target_id=int(scores.rows[f]["target_id"]),
                         **{k: int(v[j]) for k, v in cols.items()}) for j, (a, f) in enumerate(zip(ids, first))}


# ---------------------------------------------------------------------------------------------
# outputs


def filter_manifest_text(scores: FilterScores, d: Decisions) -> str:
    """`filter_manifest.jsonl`: per image, its numbers, each check and the reason."""
    lk, reasons, keep, auto = scores.leak, d.reasons(), d.keep, d.auto_keep
    lines = []
    for i, r in enumerate(scores.rows):
        row = dict(key=r["key"], aux_id=int(r["aux_id"]), aux_name=r["aux_name"], target_id=int(r["target_id"]),
                   path=r["path"], sha256=r["sha256"], caption=r.get("caption") or "",
                   caption_match=bool(d.caption_ok[i]), cos=round(float(scores.cos[i]), 5),
                   gamma1=d.settings.gamma1, gamma2=d.settings.gamma2,
                   leak_hamming=int(lk.hamming[i]), leak_cos=round(float(lk.cos[i]), 5),
                   leak_hash_ref=_ref(lk, lk.hamming_ref[i]), leak_cos_ref=_ref(lk, lk.cos_ref[i]),
                   leak=bool(d.leak[i]), keep=bool(keep[i]), reason=reasons[i])
        if i in d.overrides:  # a hand decision: the thresholds' own and who changed it when
            o = d.overrides[i]
            row.update(auto_keep=bool(auto[i]), override=o.decision, override_by=o.by, override_time=o.time)
        if r.get("truth"):
            row["truth"] = r["truth"]
        lines.append(json.dumps(row))
    return "\n".join(lines) + ("\n" if lines else "")


def _ref(lk: LeakScores, j: int) -> str:
    """'split:index' of a reference image ('' when there are none)."""
    return f"{lk.ref_split[j]}:{int(lk.ref_index[j])}" if j >= 0 and len(lk.ref_split) else ""


def save_accepted(scores: FilterScores, d: Decisions, extra: dict | None = None) -> dict:
    """Write the filter manifest, the accepted set, its neighbour map and `filter.json`; returns the provenance.

    Auxiliary classes that kept images get ids L..L+K'-1 in the order of their crawl ids; a class
    left without images appears in the map as dropped (reason no_images_after_filter).
    """
    L, keep, root = scores.num_targets, d.keep, scores.crawl_dir
    per_class = class_counts(scores, d)
    new_id, map_rows = {}, []
    for a in sorted(per_class):
        c = per_class[a]
        tname = next(r["target_name"] for r in scores.rows if int(r["aux_id"]) == a)
        if c["kept"]:
            new_id[a] = L + len(new_id)
            map_rows.append([c["target_id"], tname, c["name"], new_id[a], "crawl", "kept", ""])
        else:
            map_rows.append([c["target_id"], tname, c["name"], "", "crawl", "dropped", "no_images_after_filter"])
    map_rows.sort(key=lambda r: (r[0], r[3] == "", r[3] if r[3] != "" else 0))
    rows = [[r["path"], new_id[int(r["aux_id"])], r["aux_name"], int(r["target_id"]), r["sha256"],
             round(float(scores.cos[i]), 5)] for i, r in enumerate(scores.rows) if keep[i]]
    files = {FILTER_MANIFEST: filter_manifest_text(scores, d), ACCEPTED_MAP: _csv_text(NEIGHBOUR_COLUMNS, map_rows),
             ACCEPTED: _csv_text(ACCEPTED_COLUMNS, rows)}
    reasons = Counter(x for x in d.reasons() if x)
    prov = dict(time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                settings=asdict(d.settings), encoder=scores.encoder, encoder_key=scores.encoder_key,
                images=len(scores), kept=int(keep.sum()), caption_ok=int(d.caption_ok.sum()),
                window_ok=int(d.window_ok.sum()), leaks=int(d.leak.sum()),
                leaks_by_split=dict(Counter(s for s in d.leak_split if s)), dropped_by_reason=dict(reasons),
                kept_by_thresholds=int(d.auto_keep.sum()), overrides=dict(d.override_counts(), file=OVERRIDES),
                aux_classes=len(per_class), aux_classes_kept=len(new_id), num_targets=L,
                files=dict(manifest=MANIFEST, filter_manifest=FILTER_MANIFEST, accepted=ACCEPTED,
                           neighbours=ACCEPTED_MAP), **(extra or {}))
    save_all_or_nothing(root, files, prov)
    return prov


def save_all_or_nothing(root: Path, files: dict[str, str], prov: dict) -> None:
    """Write `files` (name -> text) and then `filter.json`, the marker that vouches for them by their sha256.

    The marker goes first and comes back last: a save cut off anywhere (full disk, kill) leaves either no
    marker or one whose hashes do not match, and `check_saved_set` (which every reader calls) refuses both,
    rather than pair a new accepted set with the thresholds of an old one.
    """
    (root / FILTER_JSON).unlink(missing_ok=True)
    for name, text in files.items():
        atomic_write_text(root / name, text)
    write_json(root / FILTER_JSON, {**prov, "sha256": {name: _sha256(text.encode()) for name, text in files.items()}})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
