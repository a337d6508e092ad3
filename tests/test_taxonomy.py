"""Taxonomies: levels, siblings, cousins, synonyms, JSON, and the WordNet source (with and without nltk)."""
import json
import sys
import types

import pytest

from ltkit.data.taxonomy import Taxonomy
from ltkit.words import normalise


@pytest.fixture
def tax():
    return Taxonomy({
        "chihuahua": ("animal", "dog"), "pug": ("animal", "dog"), "beagle": ("animal", "dog"),
        "siamese": ("animal", "cat"),
        "sedan": ("vehicle", "car"), "tram": ("vehicle", "rail"),
        "amoeba": ("protist",),  # a shallow class
    }, {"pug": ("mops", "carlin")})


def test_levels(tax):
    assert tax.classes[0] == "chihuahua" and len(tax.classes) == 7 and "pug" in tax and "dog" not in tax
    assert tax.superclass("pug", 0) == "animal" and tax.superclass("pug", 1) == "dog"
    assert tax.superclass("pug", 5) == "dog"  # clamps to the parent
    assert tax.superclass("amoeba", 1) == "protist" and tax.depth("amoeba") == 1 and tax.depth("pug") == 2
    assert tax.parent("sedan") == "car" and tax.path("tram") == ("vehicle", "rail")
    assert tax.superclasses(0) == ["animal", "vehicle", "protist"]
    assert tax.superclasses(1) == ["dog", "cat", "car", "rail", "protist"]
    assert tax.members("animal") == ["chihuahua", "pug", "beagle", "siamese"]
    assert tax.members("dog", 1) == ["chihuahua", "pug", "beagle"]


def test_siblings_and_cousins(tax):
    assert tax.siblings("pug") == ["chihuahua", "beagle"]
    assert tax.siblings("siamese") == [] and tax.siblings("amoeba") == []
    assert tax.cousins("pug") == ["siamese"]
    assert tax.cousins("siamese") == ["chihuahua", "pug", "beagle"]
    assert tax.cousins("sedan") == ["tram"] and tax.cousins("amoeba") == []


def test_synonyms(tax):
    assert tax.names_of("pug") == ("pug", "mops", "carlin")
    assert tax.names_of("beagle") == ("beagle",)
    assert Taxonomy({"a": ("x",)}, {"a": "alpha"}).names_of("a") == ("a", "alpha")  # one name, not letters


def test_errors(tax):
    with pytest.raises(KeyError, match="unknown class 'poodle'"):
        tax.superclass("poodle")
    with pytest.raises(KeyError, match="unknown class 'poodle'"):
        tax.siblings("poodle")
    with pytest.raises(ValueError, match="class 'x' has an empty ancestor path"):
        Taxonomy({"x": ()})


def test_from_parents():
    t = Taxonomy.from_parents({"apple": "fruit", "pear": "fruit", "bear": "large carnivores"})
    assert t.path("apple") == ("fruit",) and t.siblings("apple") == ["pear"]
    assert t.superclasses() == ["fruit", "large carnivores"] and t.cousins("apple") == []


def test_subset(tax):
    s = tax.subset(["pug", "tram"])
    assert s.classes == ["pug", "tram"] and s.path("tram") == ("vehicle", "rail")
    assert s.names_of("pug") == ("pug", "mops", "carlin") and s.siblings("pug") == []
    assert tax.siblings("pug") == ["chihuahua", "beagle"]  # the original is untouched
    with pytest.raises(KeyError, match="poodle"):
        tax.subset(["pug", "poodle"])


def test_json_round_trip(tax, tmp_path):
    path = tmp_path / "deep" / "tax.json"
    tax.to_json(path)
    assert list(path.parent.iterdir()) == [path]
    back = Taxonomy.from_json(path)
    assert back == tax and back.classes == tax.classes
    assert json.loads(path.read_text())["classes"]["pug"] == ["animal", "dog"]


def test_from_json_accepts_short_forms(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"classes": {"apple": "fruit", "pear": ["food", "fruit"]}, "synonyms": {"pear": "perry"}}))
    t = Taxonomy.from_json(p)
    assert t.path("apple") == ("fruit",) and t.path("pear") == ("food", "fruit")
    assert t.names_of("pear") == ("pear", "perry")


@pytest.mark.parametrize("text,match", [
    ('{"classes": {"a": ["x"],\n "b": }}', "line 2: invalid JSON"),
    ('["a", "b"]', "expected an object with a 'classes' mapping"),
    ('{"synonyms": {}}', "expected an object with a 'classes' mapping"),
    ('{"classes": ["a"]}', "expected an object with a 'classes' mapping"),
    ('{"classes": {"a": []}}', "classes\\['a'\\]: expected a non-empty list"),
    ('{"classes": {"a": ["x", 3]}}', "classes\\['a'\\]: expected a non-empty list"),
    ('{"classes": {"a": {"x": 1}}}', "classes\\['a'\\]: expected a non-empty list"),
    ('{"classes": {"a": ["x"]}, "synonyms": ["b"]}', "'synonyms' must map"),
    ('{"classes": {"a": ["x"]}, "synonyms": {"b": ["c"]}}', "synonyms\\['b'\\]: not a class"),
    ('{"classes": {"a": ["x"]}, "synonyms": {"a": 3}}', "synonyms\\['a'\\]: expected a list of names"),
    ('{"classes": {"a": ["x"]}, "synonyms": {"a": ["b", null]}}', "synonyms\\['a'\\]: expected a list of names"),
])
def test_from_json_errors_name_the_file(tmp_path, text, match):
    p = tmp_path / "my_taxonomy.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=f"my_taxonomy.json: {match}"):
        Taxonomy.from_json(p)


def test_from_json_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="taxonomy file not found: .*absent.json"):
        Taxonomy.from_json(tmp_path / "absent.json")


def test_normalise():
    assert normalise("  Great_White-Shark ") == "great white shark"
    assert normalise("teal  striped\thexagon") == "teal striped hexagon"


# ---------------------------------------------------------------------------------------------
# WordNet


def _has_nltk_wordnet() -> bool:
    try:
        import nltk

        nltk.data.find("corpora/wordnet")
        return True
    except (ImportError, LookupError):
        return False


def test_wordnet_without_nltk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk raises ImportError
    monkeypatch.setitem(sys.modules, "nltk.corpus", None)
    with pytest.raises(RuntimeError, match="needs nltk: pip install nltk"):
        Taxonomy.from_wordnet(["n01440764"])


class _Synset:
    def __init__(self, lemmas, path=()):
        self._lemmas, self._path = lemmas, path

    def lemma_names(self):
        return self._lemmas

    def hypernym_paths(self):
        return [[*self._path, self], [self]]


def _fake_nltk(monkeypatch, synsets=None, loaded=True):
    """Install a stand-in `nltk` whose wordnet knows a few offsets (or whose data is missing)."""
    nltk = types.ModuleType("nltk")
    nltk.data = types.SimpleNamespace(path=[])
    corpus = types.ModuleType("nltk.corpus")

    class WordNet:
        def ensure_loaded(self):
            if not loaded:
                raise LookupError("Resource wordnet not found.")

        def synset_from_pos_and_offset(self, pos, offset):
            assert pos == "n"
            return (synsets or {}).get(offset)

    corpus.wordnet = WordNet()
    nltk.corpus = corpus
    monkeypatch.setitem(sys.modules, "nltk", nltk)
    monkeypatch.setitem(sys.modules, "nltk.corpus", corpus)
    return nltk


def test_wordnet_data_missing_is_a_clear_error(monkeypatch, tmp_path):
    nltk = _fake_nltk(monkeypatch, loaded=False)
    with pytest.raises(RuntimeError, match="WordNet data not found.*corpora/wordnet"):
        Taxonomy.from_wordnet(["n01440764"], data_dir=tmp_path)
    assert nltk.data.path[0] == str(tmp_path)  # data_dir is where nltk looked first


def test_wordnet_paths_from_hypernyms(monkeypatch):
    entity, animal, dog = _Synset(["entity"]), _Synset(["animal", "animate_being"]), _Synset(["dog"])
    bird, device = _Synset(["bird"]), _Synset(["device"])
    _fake_nltk(monkeypatch, {
        2085620: _Synset(["Chihuahua"], (entity, animal, dog)),
        2012849: _Synset(["crane"], (entity, animal, bird)),
        3126707: _Synset(["crane"], (entity, device)),
        2085782: _Synset(["Japanese_spaniel", "Japanese_chin"], (entity, animal, dog)),
    })
    t = Taxonomy.from_wordnet(["n02085620", "n02012849", "n03126707", "n02085782"])
    assert t.path("chihuahua") == ("entity", "animal", "dog")
    assert t.names_of("japanese spaniel") == ("japanese spaniel", "japanese chin")
    assert t.siblings("chihuahua") == ["japanese spaniel"]
    # homonyms (ImageNet has two cranes) stay two classes, each named with its wnid
    assert t.classes == ["chihuahua", "crane (n02012849)", "crane (n03126707)", "japanese spaniel"]
    assert t.parent("crane (n02012849)") == "bird" and t.parent("crane (n03126707)") == "device"
    with pytest.raises(ValueError, match="not an ImageNet wnid: 'x01440764'"):
        Taxonomy.from_wordnet(["x01440764"])
    with pytest.raises(ValueError, match="wnid n09999999 is not in WordNet 3.0"):
        Taxonomy.from_wordnet(["n09999999"])


@pytest.mark.skipif(not _has_nltk_wordnet(), reason="nltk with WordNet data not installed")
def test_real_wordnet():
    t = Taxonomy.from_wordnet(["n02085620", "n01440764"])
    assert "dog" in t.path("chihuahua") and t.path("chihuahua")[0] == "entity"
