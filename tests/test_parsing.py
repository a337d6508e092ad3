"""Neighbour names from real-looking chat-model answers: refusals, reasoning blocks, preambles, echoes,
markdown, trailing prose and copies of the prompt's example never become names; plurals fold right."""
import pytest

from ltkit.neighbours.parse import parse_answer, template_example
from ltkit.words import name_key, singular
from ltkit.neighbours.prompt import PAPER_TEMPLATE

# (answer for the class "lighthouse", names expected, a word the notes must contain or None)
ANSWERS = [
    ("I'm sorry, but I can't provide fine-grained categories for that request.", [], "refusal"),
    ("As an AI language model, I don't have enough information about this category.", [], "refusal"),
    ("Unfortunately, I cannot find any fine-grained categories related to lighthouse.", [], "refusal"),
    ("sedan, SUV, luxury car, electric car", [], "example"),
    ("sedan, coupe, SUV, luxury car, electric car", [], "example"),
    ("beacon tower, lightship, sedan, coupe, SUV", ["beacon tower", "lightship"], "example"),
    ("<think>\nThe user wants fine-grained categories. A lighthouse is a tower with a light, so related: "
     "beacons, lightships.\n</think>\n\nbeacon tower, lightship, light vessel",
     ["beacon tower", "lightship", "light vessel"], "reasoning"),
    ("<think>Okay, lighthouses are towers that guide ships. Let me think about which categories", [], "reasoning"),
    ("Here are 5 fine-grained categories related to lighthouse: beacon tower, lightship, lighthouse lens, foghorn, "
     "daymark", ["beacon tower", "lightship", "lighthouse lens", "foghorn", "daymark"], None),
    ("Sure! Here are some fine-grained categories related to lighthouse:\n\n- Beacon tower\n- Lightship\n- Foghorn",
     ["Beacon tower", "Lightship", "Foghorn"], None),
    ("Query: lighthouse\n\nResponse: beacon tower, lightship, foghorn", ["beacon tower", "lightship", "foghorn"], None),
    ("Query: lighthouse\nbeacon tower, lightship", ["beacon tower", "lightship"], None),
    ("Response: beacon tower, lightship\n\nQuery: harbour\n\nResponse: pier, jetty", ["beacon tower", "lightship"],
     None),
    ("### Fine-grained categories\n\n1. **Beacon tower** – a tall structure with a light\n2. **Lightship**\n\n"
     "```\nfoghorn\n```", ["Beacon tower", "Lightship", "foghorn"], None),
    ("beacon tower, lightship, foghorn.\n\nThese categories are all related to maritime navigation and coastal "
     "safety.", ["beacon tower", "lightship", "foghorn"], "prose"),
    ("beacon tower, lightship, foghorn. These are all maritime structures.", ["beacon tower", "lightship", "foghorn"],
     "prose"),
    ("1. Beacon tower\n2. Lightship\n\nI hope this helps! Let me know if you need more.", ["Beacon tower", "Lightship"],
     "prose"),
    ("Note: lighthouses are unique structures, so related categories are limited.", [], "prose"),
    ('{"names": ["beacon tower", "lightship", "light vessel"]}', ["beacon tower", "lightship", "light vessel"], None),
    ('["beacon tower", "lightships", "lightship"]', ["beacon tower", "lightships"], None),
    ("St. Bernard, Bernese mountain dog, Newfoundland", ["St. Bernard", "Bernese mountain dog", "Newfoundland"], None),
    ("Certainly.\n- can opener\n- post-it note", ["can opener", "post-it note"], "prose"),
    ("Go, shogi, xiangqi", ["Go", "shogi", "xiangqi"], None),
]


@pytest.mark.parametrize("text,expected,note", ANSWERS)
def test_real_looking_answers(text, expected, note):
    parsed = parse_answer(text, class_name="lighthouse", template=PAPER_TEMPLATE)
    assert parsed.names == expected
    if note is None:
        assert parsed.notes == []
    else:
        assert any(note in n for n in parsed.notes), parsed.notes
    assert parsed.refusal == (note == "refusal")


def test_example_names_stay_for_a_class_like_the_example():
    """'race car' shares 'car' with the example: sedan and coupe may well be its neighbours."""
    parsed = parse_answer("sedan, coupe, SUV, stock car", class_name="race car", template=PAPER_TEMPLATE)
    assert parsed.names == ["sedan", "coupe", "SUV", "stock car"] and parsed.notes == []
    assert template_example(PAPER_TEMPLATE) == ("sports car", ["sedan", "coupe", "SUV", "luxury car", "electric car"])
    assert template_example("List {K} classes related to {CLS}.") is None


PLURALS = [("houses", "house"), ("boxes", "box"), ("glass", "glass"), ("bus", "bus"), ("buses", "bus"),
           ("species", "species"), ("series", "series"), ("wolves", "wolf"), ("knives", "knife"),
           ("olives", "olive"), ("potatoes", "potato"), ("shoes", "shoe"), ("berries", "berry"), ("mice", "mouse"),
           ("lenses", "lens"), ("lens", "lens"), ("octopuses", "octopus"), ("blouses", "blouse"),
           ("dresses", "dress"), ("matches", "match"), ("keys", "key"), ("iris", "iris"), ("cactus", "cactus"),
           ("firemen", "fireman"), ("gas", "gas"), ("sedans", "sedan"), ("canoes", "canoe"), ("horses", "horse")]


@pytest.mark.parametrize("plural,single", PLURALS)
def test_singular(plural, single):
    assert singular(plural) == single
    assert singular(single) == single  # a singular stays as it is


def test_name_key_folds_the_last_word_only():
    assert name_key("Light Houses") == name_key("light house") == "light house"
    assert name_key("boxes of matches") == "boxes of match"
