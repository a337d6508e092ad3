"""The data layer: imbalance profiles, shot groups, image sets, every loader in its real file format, io."""
import json
import os
import pickle
import stat

import numpy as np
import pytest
from PIL import Image

from ltkit.data.cifar import cifar100_lt
from ltkit.data import (ArrayImages, FileImages, LTData, TransformedSet, exp_profile, make_long_tailed,
                        pareto_profile, profile_counts, shot_accuracy, shot_groups, subsample_indices)
from ltkit.io import append_jsonl, atomic_write_bytes, atomic_write_text, read_jsonl, write_json
from ltkit.data.readers import (load_cifar100, load_image_folder, load_image_folders, load_imagenet_lt,
                           load_inat, load_places_lt, load_split_files, read_split_file)

# ---------------------------------------------------------------------------------------------
# imbalance profiles


@pytest.mark.parametrize("L,head,imb", [(100, 500, 100), (100, 500, 10), (24, 150, 30), (10, 98, 49), (2, 60, 3)])
def test_exp_profile_endpoints_and_monotone(L, head, imb):
    c = exp_profile(L, head, imb)
    assert len(c) == L and c.dtype.kind == "i"
    assert c[0] == head and c[-1] == head // imb  # head / imbalance (integral here)
    assert (np.diff(c) <= 0).all()


def test_exp_profile_matches_cifar100_lt():
    # CIFAR-100-LT (Cao et al. 2019): int(500 * (1/IF) ** (i / 99)); 10,847 images at IF 100
    for imb, total in ((100, 10847), (50, 12608), (10, 19573)):
        c = exp_profile(100, 500, imb)
        assert c.sum() == total
        assert c.tolist() == [int(500 * (1 / imb) ** (i / 99)) for i in range(100)]


@pytest.mark.parametrize("L,head,imb", [(1000, 1280, 256), (365, 4980, 996), (50, 200, 10), (2, 40, 4)])
def test_pareto_profile_endpoints_and_monotone(L, head, imb):
    c = pareto_profile(L, head, imb, alpha=6)
    assert len(c) == L and c[0] == head and c[-1] == round(head / imb)
    assert (np.diff(c) <= 0).all()
    assert np.array_equal(profile_counts("pareto", L, head, imb), c)


def test_pareto_is_not_exp():
    e, p = exp_profile(1000, 1280, 256), pareto_profile(1000, 1280, 256)
    assert not np.array_equal(e, p)
    assert p[500] != e[500]


def test_profile_edge_cases_and_errors():
    assert exp_profile(1, 7, 10).tolist() == [7]
    assert pareto_profile(1, 7, 10).tolist() == [7]
    assert exp_profile(5, 10, 1).tolist() == [10] * 5
    assert exp_profile(5, 3, 100).min() == 1  # never an empty class
    for bad in ((0, 10, 10), (5, 0, 10), (5, 10, 0.5)):
        with pytest.raises(ValueError):
            exp_profile(*bad)
    for bad in ((5, 0, 10), (5, 10, 0.5)):
        with pytest.raises(ValueError):
            pareto_profile(*bad)
    with pytest.raises(ValueError, match="unknown imbalance profile 'zipf'"):
        profile_counts("zipf", 10, 100, 10)


# ---------------------------------------------------------------------------------------------
# subsampling


@pytest.fixture
def balanced_labels():
    return np.random.default_rng(1).permutation(np.repeat(np.arange(4), 50))


def test_subsample_exact_counts(balanced_labels):
    counts = [50, 20, 5, 1]
    idx = subsample_indices(balanced_labels, counts, seed=0)
    assert len(set(idx.tolist())) == len(idx) == sum(counts)
    assert np.bincount(balanced_labels[idx], minlength=4).tolist() == counts


def test_subsample_seed(balanced_labels):
    a = subsample_indices(balanced_labels, [30, 20, 5, 1], seed=0)
    assert np.array_equal(a, subsample_indices(balanced_labels, [30, 20, 5, 1], seed=0))
    assert not np.array_equal(a, subsample_indices(balanced_labels, [30, 20, 5, 1], seed=1))


def test_subsample_class_order(balanced_labels):
    idx = subsample_indices(balanced_labels, [40, 10, 3, 1], seed=0, class_order=[2, 0, 3, 1])
    assert np.bincount(balanced_labels[idx], minlength=4).tolist() == [10, 1, 40, 3]


def test_subsample_errors(balanced_labels):
    with pytest.raises(ValueError, match="class 0 has 50 samples, fewer than the 51"):
        subsample_indices(balanced_labels, [51, 1, 1, 1])
    with pytest.raises(ValueError, match="class 7 has 0 samples"):
        subsample_indices(balanced_labels, [5, 1], class_order=[0, 7])
    with pytest.raises(ValueError, match="class_order has 3 classes"):
        subsample_indices(balanced_labels, [5, 1], class_order=[0, 1, 2])
    with pytest.raises(ValueError, match="more than once"):
        subsample_indices(balanced_labels, [5, 1], class_order=[1, 1])


# ---------------------------------------------------------------------------------------------
# shot groups


def test_shot_group_boundaries():
    g = shot_groups([101, 100, 50, 20, 19, 1, 1000])
    assert g.tolist() == ["many", "medium", "medium", "medium", "few", "few", "many"]
    g = shot_groups([51, 50, 10, 9], many=50, few=10)
    assert g.tolist() == ["many", "medium", "medium", "few"]


def test_shot_accuracy():
    counts = [200, 150, 60, 30, 10, 5]
    acc = [0.9, 0.7, 0.6, 0.4, 0.2, 0.0]
    out = shot_accuracy(acc, counts)
    assert out["many"] == pytest.approx(0.8) and out["medium"] == pytest.approx(0.5)
    assert out["few"] == pytest.approx(0.1) and out["overall"] == pytest.approx(np.mean(acc))
    out = shot_accuracy([0.5, 0.3], [500, 400])
    assert out["many"] == pytest.approx(0.4) and np.isnan(out["medium"]) and np.isnan(out["few"])
    assert shot_accuracy(acc, counts, many=150, few=60)["medium"] == pytest.approx(np.mean([0.7, 0.6]))


# ---------------------------------------------------------------------------------------------
# image sets


def test_array_images_and_transformed_set():
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    s = ArrayImages(x, [0, 1, 1, 2, 2])
    assert len(s) == 5 and s.counts(4).tolist() == [1, 2, 2, 0]
    assert np.array_equal(np.asarray(s.load(3)), x[3]) and s.load(3).size == (6, 8)
    sub = s.subset([4, 0])
    assert sub.labels.tolist() == [2, 0] and np.array_equal(np.asarray(sub.load(0)), x[4])
    t = TransformedSet(s, transform=lambda im: np.asarray(im).sum(), label_offset=10)
    assert len(t) == 5 and t[3] == (x[3].sum(), 12)
    im, y = TransformedSet(s)[np.int64(1)]
    assert isinstance(im, Image.Image) and y == 1
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        ArrayImages(x, [0, 1, 2, 3])


def test_ltdata_check():
    x = np.zeros((4, 2, 2, 3), np.uint8)
    ok = LTData("t", ["a", "b"], ArrayImages(x, [0, 0, 1, 1]), None, ArrayImages(x[:2], [0, 1]))
    assert ok.check() is ok and ok.train_counts.tolist() == [2, 2] and ok.num_classes == 2
    bad = LTData("t", ["a", "b"], ArrayImages(x, [0, 0, 1, 1]), None, ArrayImages(x[:2], [0, 2]))
    with pytest.raises(ValueError, match="t test: label 2 outside 0..1"):
        bad.check()
    empty = LTData("t", ["a", "b", "c"], ArrayImages(x, [0, 0, 1, 1]), None, ArrayImages(x[:2], [0, 1]))
    with pytest.raises(ValueError, match="class 2 \\('c'\\) has no images"):
        empty.check()


# ---------------------------------------------------------------------------------------------
# ImageNet-LT and Places-LT: `relative/path label` files


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def write_jpeg(path, colour, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)


def write_split(path, rows, root=None):
    path.write_text("".join(f"{p} {y}\n" for p, y in rows))
    if root is not None:
        for p, y in rows:
            write_jpeg(root / p, COLOURS[y])


WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def imagenet_lt(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    train = [(f"train/{w}/{w}_{190 + k}.JPEG", y) for y, (w, n) in enumerate(zip(WNIDS, (4, 2, 1))) for k in range(n)]
    val = [(f"val/{w}/ILSVRC2012_val_{100 * y + k:08d}.JPEG", y) for y, w in enumerate(WNIDS) for k in range(2)]
    test = [(f"val/{w}/ILSVRC2012_val_{500 + 100 * y + k:08d}.JPEG", y) for y, w in enumerate(WNIDS) for k in range(3)]
    for name, rows in (("train", train), ("val", val), ("test", test)):
        write_split(root / f"ImageNet_LT_{name}.txt", rows, root)
    return root, train


def test_imagenet_lt_loads(imagenet_lt):
    root, train = imagenet_lt
    d = load_imagenet_lt(root, class_names=["tench", "goldfish", "great white shark"])
    assert d.name == "ImageNet-LT" and d.num_classes == 3
    assert d.train_counts.tolist() == [4, 2, 1] and len(d.val) == 6 and len(d.test) == 9
    assert d.train.paths[0] == "train/n01440764/n01440764_190.JPEG" and d.train.paths == [p for p, _ in train]
    assert d.test.paths[0] == "val/n01440764/ILSVRC2012_val_00000500.JPEG"
    for s in (d.train, d.val, d.test):
        for i in range(len(s)):
            im = s.load(i)
            assert im.mode == "RGB" and im.size == (12, 10)
            assert np.abs(np.asarray(im, int) - COLOURS[s.labels[i]]).max() < 12  # JPEG is lossy
    assert d.taxonomy is None


def test_imagenet_lt_needs_all_1000_classes_without_names(imagenet_lt):
    root, _ = imagenet_lt
    with pytest.raises(ValueError, match="class 3 .* has no images .*997 empty classes"):
        load_imagenet_lt(root)


def test_split_files_in_their_own_folder(imagenet_lt, tmp_path):
    root, _ = imagenet_lt
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "val", "test"):
        (root / f"ImageNet_LT_{name}.txt").rename(splits / f"ImageNet_LT_{name}.txt")
    with pytest.raises(FileNotFoundError, match="ImageNet_LT_train.txt"):
        load_imagenet_lt(root, class_names=["a", "b", "c"])
    d = load_imagenet_lt(root, splits, class_names=["a", "b", "c"])
    assert d.train_counts.tolist() == [4, 2, 1] and d.train.root == root


def test_places_lt_loads(tmp_path):
    root = tmp_path / "places"
    root.mkdir()
    cats = ["a/airfield", "a/airport_terminal", "b/bakery/shop"]
    train = [(f"data_256/{c}/{k + 1:08d}.jpg", y) for y, (c, n) in enumerate(zip(cats, (3, 2, 1))) for k in range(n)]
    val = [(f"val_256/Places365_val_{10 * y + k + 1:08d}.jpg", y) for y in range(3) for k in range(2)]
    test = [(f"val_256/Places365_val_{100 + 10 * y + k:08d}.jpg", y) for y in range(3) for k in range(2)]
    for name, rows in (("train", train), ("val", val), ("test", test)):
        write_split(root / f"Places_LT_{name}.txt", rows, root)
    d = load_places_lt(root, class_names=["airfield", "airport_terminal", "bakery/shop"])
    assert d.name == "Places-LT" and d.train_counts.tolist() == [3, 2, 1]
    assert d.train.paths[0] == "data_256/a/airfield/00000001.jpg"
    assert d.test.paths[-1] == "val_256/Places365_val_00000121.jpg"
    im = d.test.load(len(d.test) - 1)
    assert np.abs(np.asarray(im, int) - COLOURS[2]).max() < 12
    with pytest.raises(ValueError, match="class 3 .* has no images"):
        load_places_lt(root)  # 365 classes by default


def test_read_split_file_formats(tmp_path):
    f = tmp_path / "s.txt"
    f.write_bytes(b"my photos/train/a b.jpg 1\r\n\r\nval/x.JPEG 0\r\n\n")  # spaces in paths, CRLF, blank lines
    paths, labels = read_split_file(f)
    assert paths == ["my photos/train/a b.jpg", "val/x.JPEG"] and labels.tolist() == [1, 0]


@pytest.mark.parametrize("line,match", [
    ("train/n01440764/n01440764_10026.JPEG", "expected 'relative/path label'"),
    ("train/n01440764/n01440764_10026.JPEG zero", "expected 'relative/path label'"),
    ("train/n01440764/n01440764_10026.JPEG 0.5", "expected 'relative/path label'"),
    ("train/n01440764/n01440764_10026.JPEG 3", "unknown label 3 \\(expected 0..2\\)"),
    ("train/n01440764/n01440764_10026.JPEG -1", "unknown label -1"),
])
def test_split_file_errors_name_file_and_line(tmp_path, line, match):
    f = tmp_path / "ImageNet_LT_train.txt"
    f.write_text(f"train/n01440764/n01440764_190.JPEG 0\ntrain/n01443537/n01443537_2.JPEG 1\n{line}\n")
    with pytest.raises(ValueError, match=f"ImageNet_LT_train.txt:3: {match}"):
        read_split_file(f, num_classes=3)


def test_split_file_and_root_errors(tmp_path, imagenet_lt):
    root, _ = imagenet_lt
    with pytest.raises(FileNotFoundError, match="root not found: .*nowhere"):
        load_imagenet_lt(tmp_path / "nowhere", splits_dir=root, class_names=["a", "b", "c"])
    with pytest.raises(FileNotFoundError, match="split file not found: .*missing.txt"):
        read_split_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt: no samples"):
        read_split_file(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="unknown label -2 \\(expected >= 0\\)"):
        (tmp_path / "neg.txt").write_text("a.jpg -2\n")
        read_split_file(tmp_path / "neg.txt")
    # an unknown label in the test file is reported against the test file
    (root / "ImageNet_LT_test.txt").write_text("val/n01440764/ILSVRC2012_val_00000001.JPEG 5\n")
    with pytest.raises(ValueError, match="ImageNet_LT_test.txt:1: unknown label 5"):
        load_imagenet_lt(root, class_names=["a", "b", "c"])


def test_empty_class_and_name_count(imagenet_lt):
    root, train = imagenet_lt
    write_split(root / "ImageNet_LT_train.txt", [r for r in train if r[1] != 1])
    with pytest.raises(ValueError, match="class 1 \\('goldfish'\\) has no images"):
        load_imagenet_lt(root, class_names=["tench", "goldfish", "great white shark"])
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        load_split_files("X", root, root / "ImageNet_LT_val.txt", None, root / "ImageNet_LT_test.txt",
                         ["a", "b"], 3)


def test_missing_image_file_is_an_error(imagenet_lt):
    root, train = imagenet_lt
    (root / train[1][0]).unlink()
    d = load_imagenet_lt(root, class_names=["a", "b", "c"])
    with pytest.raises(FileNotFoundError, match=f"image 1 not found: .*{train[1][0]}"):
        d.train.load(1)


# ---------------------------------------------------------------------------------------------
# iNaturalist 2018: COCO-style JSON


RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")
CATS = [  # ids deliberately out of order: labels follow sorted ids
    {"id": 7, "name": "Aves sp. 7", "supercategory": "Aves", "kingdom": "Animalia", "phylum": "Chordata",
     "class": "Aves", "order": "Passeriformes", "family": "Corvidae", "genus": "Corvus"},
    {"id": 2, "name": "Plantae sp. 2", "supercategory": "Plantae", "kingdom": "Plantae", "phylum": "Tracheophyta",
     "class": "Magnoliopsida", "order": "Rosales", "family": "Rosaceae", "genus": "Rosa"},
    {"id": 4, "name": "Aves sp. 4", "supercategory": "Aves", "kingdom": "Animalia", "phylum": "Chordata",
     "class": "Aves", "order": "Passeriformes", "family": "Corvidae", "genus": "Corvus"},
]


def inat_json(per_cat, start=0):
    images, anns = [], []
    for c, n in zip(CATS, per_cat):
        for k in range(n):
            i = start + len(images)
            images.append({"id": i, "width": 12, "height": 10, "license": 1, "rights_holder": "someone",
                           "file_name": f"train_val2018/{c['supercategory']}/{c['id']}/{i:032x}.jpg"})
            anns.append({"id": 1000 + i, "image_id": i, "category_id": c["id"]})
    return {"info": {"year": 2018, "version": "1.0"}, "images": images, "annotations": anns,
            "categories": [dict(c) for c in CATS], "licenses": [{"id": 1, "name": "CC BY"}]}


@pytest.fixture
def inat(tmp_path):
    root = tmp_path / "inat"
    root.mkdir()
    tr, va = inat_json((3, 5, 1)), inat_json((1, 1, 1), start=100)
    for obj in (tr, va):
        for im in obj["images"]:
            cat = int(im["file_name"].split("/")[2])
            write_jpeg(root / im["file_name"], COLOURS[sorted(c["id"] for c in CATS).index(cat)])
    (root / "train2018.json").write_text(json.dumps(tr))
    (root / "val2018.json").write_text(json.dumps(va))
    return root, tr, va


def test_inat_loads(inat):
    root, tr, va = inat
    d = load_inat(root, root / "train2018.json", root / "val2018.json")
    assert d.class_names == ["Plantae sp. 2", "Aves sp. 4", "Aves sp. 7"]  # sorted by category id
    assert d.train_counts.tolist() == [5, 1, 3] and d.val is None and len(d.test) == 3
    assert d.test.labels.tolist() == [2, 0, 1]
    assert d.train.paths[0] == tr["images"][0]["file_name"] and d.train.paths[0].startswith("train_val2018/Aves/7/")
    for i in range(len(d.train)):
        assert np.abs(np.asarray(d.train.load(i), int) - COLOURS[d.train.labels[i]]).max() < 12
    t = d.taxonomy
    assert t.superclass("Aves sp. 4", 0) == "Aves" and t.parent("Aves sp. 4") == "Corvus"
    assert t.path("Plantae sp. 2") == ("Plantae", "Plantae", "Tracheophyta", "Magnoliopsida", "Rosales",
                                       "Rosaceae", "Rosa")
    assert t.siblings("Aves sp. 4") == ["Aves sp. 7"] and t.siblings("Plantae sp. 2") == []


def test_inat_real_category_names(inat):
    root, _, _ = inat
    real = [{**c, "name": n} for c, n in zip(CATS, ["Corvus corax", "Rosa canina", "Corvus corone"])]
    (root / "categories.json").write_text(json.dumps(real))
    d = load_inat(root, root / "train2018.json", root / "val2018.json", root / "categories.json")
    assert d.class_names == ["Rosa canina", "Corvus corone", "Corvus corax"]
    assert d.taxonomy.siblings("Corvus corax") == ["Corvus corone"]


def test_inat_minimal_categories_get_a_root(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    obj = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 0}],
           "categories": [{"id": 0, "name": "only"}]}
    (root / "t.json").write_text(json.dumps(obj))
    d = load_inat(root, root / "t.json", root / "t.json")
    assert d.taxonomy.path("only") == ("all",)


def _break(obj, how):
    if how == "no_annotations":
        del obj["annotations"]
    elif how == "no_file_name":
        del obj["images"][1]["file_name"]
    elif how == "bad_category":
        obj["annotations"][2]["category_id"] = 99
    elif how == "bad_image":
        obj["annotations"][0]["image_id"] = 12345
    elif how == "category_without_id":
        del obj["categories"][1]["id"]
    elif how == "images_not_a_list":
        obj["images"] = {"0": obj["images"][0]}
    elif how == "unannotated_image":
        del obj["annotations"][4]
    return obj


@pytest.mark.parametrize("how,match", [
    ("no_annotations", "missing top-level field 'annotations'"),
    ("no_file_name", "images\\[1\\] lacks 'id' or 'file_name'"),
    ("bad_category", "annotations\\[2\\]: unknown category_id 99"),
    ("bad_image", "annotations\\[0\\]: unknown image_id 12345"),
    ("category_without_id", "categories\\[1\\] lacks 'id' or 'name'"),
    ("images_not_a_list", "field 'images' must be a list"),
    ("unannotated_image", "1 images have no annotation"),
])
def test_inat_bad_fields(inat, how, match):
    root, tr, _ = inat
    (root / "train2018.json").write_text(json.dumps(_break(tr, how)))
    with pytest.raises(ValueError, match=f"train2018.json: {match}"):
        load_inat(root, root / "train2018.json", root / "val2018.json")


def test_inat_file_errors(inat, tmp_path):
    root, _, va = inat
    with pytest.raises(FileNotFoundError, match="iNaturalist root not found"):
        load_inat(tmp_path / "nope", root / "train2018.json", root / "val2018.json")
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*val2017.json"):
        load_inat(root, root / "train2018.json", root / "val2017.json")
    (root / "val2018.json").write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(ValueError, match="val2018.json: line 2: invalid JSON"):
        load_inat(root, root / "train2018.json", root / "val2018.json")
    va["annotations"][0]["category_id"] = 3
    (root / "val2018.json").write_text(json.dumps(va))
    with pytest.raises(ValueError, match="val2018.json: annotations\\[0\\]: unknown category_id 3"):
        load_inat(root, root / "train2018.json", root / "val2018.json")
    (root / "categories.json").write_text(json.dumps([{"id": 2}]))
    with pytest.raises(ValueError, match="categories.json: categories\\[0\\] lacks 'id' or 'name'"):
        load_inat(root, root / "train2018.json", root / "val2018.json", root / "categories.json")
    (root / "categories.json").write_text(json.dumps([{"id": 2, "name": "a"}, {"id": 2, "name": "b"}]))
    with pytest.raises(ValueError, match="categories.json: duplicate category ids"):
        load_inat(root, root / "train2018.json", root / "val2018.json", root / "categories.json")


# ---------------------------------------------------------------------------------------------
# CIFAR-100 python pickles


FINE = ["apple", "aquarium_fish", "baby", "bear"]
COARSE = ["fruit_and_vegetables", "fish", "people", "large_carnivores"]
FINE_TO_COARSE = [0, 1, 2, 3]


def to_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC to CIFAR rows: 1024 R, then 1024 G, then 1024 B, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def cifar_batch(images, fine, label, keys=str):
    k = (lambda s: s.encode()) if keys is bytes else (lambda s: s)
    return {k("data"): to_rows(images), k("fine_labels"): list(map(int, fine)),
            k("coarse_labels"): [FINE_TO_COARSE[y] for y in fine], k("batch_label"): k(label),
            k("filenames"): [k(f"img_{i}.png") for i in range(len(fine))]}


def write_cifar(root, per_class=(5, 4, 3, 2), test_per_class=2, keys=str, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    y = np.repeat(np.arange(len(per_class)), per_class)
    yt = np.repeat(np.arange(len(per_class)), test_per_class)
    x, xt = (rng.integers(0, 256, (len(v), 32, 32, 3), dtype=np.uint8) for v in (y, yt))
    k = (lambda s: s.encode()) if keys is bytes else (lambda s: s)
    for name, obj in (("train", cifar_batch(x, y, "training batch 1 of 1", keys)),
                      ("test", cifar_batch(xt, yt, "testing batch 1 of 1", keys)),
                      ("meta", {k("fine_label_names"): [k(n) for n in FINE],
                                k("coarse_label_names"): [k(n) for n in COARSE]})):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)
    return x, y, xt, yt


def test_cifar100_pixel_layout_round_trip(tmp_path):
    x, y, xt, yt = write_cifar(tmp_path)
    d = load_cifar100(tmp_path)
    assert d.name == "CIFAR-100" and d.class_names == FINE and d.val is None
    assert d.train_counts.tolist() == [5, 4, 3, 2] and np.array_equal(d.test.labels, yt)
    for s, imgs in ((d.train, x), (d.test, xt)):
        for i in range(len(s)):
            im = s.load(i)
            assert im.mode == "RGB" and im.size == (32, 32)
            assert np.array_equal(np.asarray(im), imgs[i])
    assert d.taxonomy.superclass("aquarium_fish") == "fish" and d.taxonomy.siblings("apple") == []


def test_cifar100_plane_order(tmp_path):
    """Row i of `data` is R plane, G plane, B plane: a row with only the G plane set is pure green."""
    write_cifar(tmp_path, per_class=(1, 1, 1, 1), test_per_class=1)
    folder = tmp_path / "cifar-100-python"
    obj = pickle.loads((folder / "train").read_bytes())
    row = np.zeros(3072, np.uint8)
    row[1024:2048] = 255                      # G plane
    row[0 * 1024 + 32 * 5 + 7] = 9            # R value of the pixel at row 5, column 7
    obj["data"][2] = row
    (folder / "train").write_bytes(pickle.dumps(obj))
    px = np.asarray(load_cifar100(tmp_path).train.load(2))
    assert px[0, 0].tolist() == [0, 255, 0] and px[5, 7].tolist() == [9, 255, 0] and px[7, 5].tolist() == [0, 255, 0]


def test_cifar100_bytes_keys(tmp_path):
    """Pickles written with bytes keys and names (the `encoding="bytes"` view) load the same."""
    x, _, _, _ = write_cifar(tmp_path, keys=bytes)
    d = load_cifar100(tmp_path)
    assert d.class_names == FINE and d.taxonomy.superclass("bear") == "large_carnivores"
    assert np.array_equal(np.asarray(d.train.load(0)), x[0])


def test_cifar100_lt(tmp_path):
    write_cifar(tmp_path, per_class=(500, 500, 500, 500), test_per_class=3)
    d = cifar100_lt(tmp_path, imbalance=100, seed=0)
    assert d.name == "CIFAR-100-LT-100"
    assert d.train_counts.tolist() == exp_profile(4, 500, 100).tolist() == [500, 107, 23, 5]
    assert len(d.test) == 12 and d.class_names == FINE and d.taxonomy is not None
    full = load_cifar100(tmp_path)
    # every kept image is an unchanged image of its class
    rows = {full.train.images[i].tobytes(): full.train.labels[i] for i in range(len(full.train))}
    assert all(rows[d.train.images[i].tobytes()] == d.train.labels[i] for i in range(len(d.train)))
    again, other = cifar100_lt(tmp_path, imbalance=100, seed=0), cifar100_lt(tmp_path, imbalance=100, seed=1)
    assert np.array_equal(again.train.images, d.train.images)
    assert not np.array_equal(other.train.images, d.train.images)
    d10 = cifar100_lt(tmp_path, imbalance=10)
    assert d10.train_counts.tolist() == [500, 232, 107, 50] and d10.name == "CIFAR-100-LT-10"


def test_make_long_tailed_options(tmp_path):
    write_cifar(tmp_path, per_class=(30, 30, 30, 30), test_per_class=1)
    full = load_cifar100(tmp_path)
    d = make_long_tailed(full, "pareto", imbalance=10, seed=3, shuffle_classes=True)
    counts = d.train_counts
    assert sorted(counts.tolist(), reverse=True) == pareto_profile(4, 30, 10).tolist()
    order = np.random.default_rng(3).permutation(4)
    assert counts[order].tolist() == pareto_profile(4, 30, 10).tolist()
    with pytest.raises(ValueError, match="fewer than the 40"):
        make_long_tailed(full, head=40)


@pytest.mark.parametrize("how,match", [
    ("truncate", "train: not a CIFAR-100 python pickle"),
    ("no_fine", "train: missing field 'fine_labels'"),
    ("bad_shape", "train: field 'data' has shape \\(14, 3000\\)"),
    ("unknown_fine", "train: unknown fine label 4 \\(expected 0..3\\)"),
    ("unknown_coarse", "train: unknown coarse label 20"),
    ("not_a_dict", "train: not a CIFAR-100 python pickle \\(a list"),
    ("few_labels", "train: 14 images but 13 fine"),
    ("empty_class", "class 3 \\('bear'\\) has no images"),
])
def test_cifar100_malformed(tmp_path, how, match):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    obj = pickle.loads(path.read_bytes())
    if how == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    else:
        if how == "no_fine":
            del obj["fine_labels"]
        elif how == "bad_shape":
            obj["data"] = obj["data"][:, :3000]
        elif how == "unknown_fine":
            obj["fine_labels"][3] = 4
        elif how == "unknown_coarse":
            obj["coarse_labels"][0] = 20
        elif how == "not_a_dict":
            obj = [obj]
        elif how == "few_labels":
            obj["fine_labels"].pop()
        elif how == "empty_class":
            keep = [i for i, y in enumerate(obj["fine_labels"]) if y != 3]
            obj = {**obj, "data": obj["data"][keep], "fine_labels": [obj["fine_labels"][i] for i in keep],
                   "coarse_labels": [obj["coarse_labels"][i] for i in keep]}
        path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=match):
        load_cifar100(tmp_path)


def test_cifar100_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-100 not found: .*cifar-100-python"):
        load_cifar100(tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(FileNotFoundError, match="CIFAR-100 file not found: .*test"):
        load_cifar100(tmp_path)
    meta = tmp_path / "cifar-100-python" / "meta"
    meta.write_bytes(pickle.dumps({"fine_label_names": FINE}))
    with pytest.raises(ValueError, match="meta: missing 'fine_label_names' or 'coarse_label_names'"):
        load_cifar100(tmp_path)


# ---------------------------------------------------------------------------------------------
# ImageFolder


def write_png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), colour).save(path)


@pytest.fixture
def folders(tmp_path):
    spec = {"train": {"dog": 3, "cat": 2, "zebra": 1}, "val": {"dog": 1, "cat": 1, "zebra": 1},
            "test": {"dog": 2, "cat": 2, "zebra": 2}}
    for split, per in spec.items():
        for c, n in per.items():
            for k in range(n):
                write_png(tmp_path / split / c / f"{k}.png", COLOURS[sorted(per).index(c)])
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    write_png(tmp_path / "train" / "dog" / "nested" / "deep.PNG", COLOURS[1])
    return tmp_path


def test_image_folders_load(folders):
    d = load_image_folders("pets", folders / "train", folders / "test", folders / "val")
    assert d.class_names == ["cat", "dog", "zebra"] and d.train_counts.tolist() == [2, 4, 1]
    assert len(d.val) == 3 and d.test.counts(3).tolist() == [2, 2, 2]
    assert "dog/nested/deep.PNG" in d.train.paths and not any(p.endswith(".txt") for p in d.train.paths)
    for i in range(len(d.train)):
        assert np.asarray(d.train.load(i))[0, 0].tolist() == list(COLOURS[d.train.labels[i]])  # PNG: exact
    assert load_image_folders("pets", folders / "train", folders / "test").val is None


def test_image_folder_errors(folders):
    with pytest.raises(FileNotFoundError, match="ImageFolder root not found"):
        load_image_folder(folders / "missing")
    (folders / "train" / "emu").mkdir()
    (folders / "train" / "emu" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="train/emu: class folder has no images"):
        load_image_folder(folders / "train")
    (folders / "train" / "emu" / "readme.md").unlink()
    (folders / "train" / "emu").rmdir()
    write_png(folders / "test" / "yak" / "0.png", COLOURS[0])
    with pytest.raises(ValueError, match="test: class folders differ from train's \\(unknown: \\['yak'\\]\\)"):
        load_image_folders("pets", folders / "train", folders / "test")
    (folders / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(folders / "empty")


def test_file_images_subset(folders):
    names, s = load_image_folder(folders / "test")
    sub = s.subset([5, 0])
    assert isinstance(sub, FileImages) and sub.labels.tolist() == [2, 0] and sub.paths == [s.paths[5], s.paths[0]]


# ---------------------------------------------------------------------------------------------
# io: atomic writes and JSONL


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second é")
    assert target.read_text(encoding="utf-8") == "second é"
    assert os.listdir(target.parent) == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # a plain file's mode, not mkstemp's 0600
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails mid-write
    assert target.read_text(encoding="utf-8") == "second é" and os.listdir(target.parent) == ["out.json"]
    write_json(tmp_path / "n.json", {"a": np.int64(3), "b": np.arange(2), "p": tmp_path})
    assert json.loads((tmp_path / "n.json").read_text()) == {"a": 3, "b": [0, 1], "p": str(tmp_path)}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert sorted(os.listdir(tmp_path)) == ["n.json", "sub"]


def test_jsonl_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / "m.jsonl"
    assert list(read_jsonl(p)) == []
    for i in range(3):
        append_jsonl(p, {"i": i, "v": np.float32(0.5)})
    assert list(read_jsonl(p)) == [{"i": 0, "v": 0.5}, {"i": 1, "v": 0.5}, {"i": 2, "v": 0.5}]
    with open(p, "a") as f:
        f.write('{"i": 3, "v"')  # a crash mid-write
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2]
    # resuming after the crash: the torn line is cut, the new row is whole, and the file stays readable
    append_jsonl(p, {"i": 4})
    append_jsonl(p, {"i": 5})
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2, 4, 5]


def test_jsonl_whole_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"i": 0}\n{"i": 1}')
    append_jsonl(p, {"i": 2})
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2]
    p.write_text('{"i": 0')  # a file that is one torn line
    append_jsonl(p, {"i": 1})
    assert p.read_text() == '{"i": 1}\n'


def test_jsonl_bad_middle_line_raises_with_line_number(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"i": 0}\n\n{"i": 1\n{"i": 2}\n')
    rows = read_jsonl(p)
    assert next(rows) == {"i": 0}
    with pytest.raises(ValueError, match="m.jsonl: line 3: invalid JSON"):
        next(rows)

