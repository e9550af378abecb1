import json

import pytest

from ovdet.errors import VocabularyError
from ovdet.vocab.parse import COCO80, parse_vocabulary
from ovdet.vocab.prompts import get_templates


def test_inline_list_with_synonyms_and_attributes():
    v = parse_vocabulary("cat|kitty, traffic cone , red umbrella", attributes="red, blue")
    assert v.names == ("cat", "traffic cone", "red umbrella")
    assert v.synonyms == (("kitty",), (), ())
    assert v.attributes == ("red", "blue")


@pytest.mark.parametrize(
    "spec",
    [
        "cat|kitty\ndog\nred umbrella",  # a pasted file: one name a line
        "cat|kitty,\ndog,\nred umbrella,\n",  # ... with trailing commas
        "cat|kitty, dog\n\nred umbrella\r\n",  # mixed, blank line, CRLF
        '[{"name": "cat", "synonyms": ["kitty"]}, "dog", "red umbrella"]',  # JSON, as in a file
        '"cat"|\'kitty\', "dog", "red umbrella"',  # quoted names, as copied from code
        "\ufeffcat|kitty, dog, red umbrella",  # a BOM from a Windows clipboard
    ],
)
def test_inline_forms_people_paste(spec):
    """Never one class named "cat dog" or '[cat': each form gives the same three classes."""
    v = parse_vocabulary(spec)
    assert v.names == ("cat", "dog", "red umbrella") and v.synonyms == (("kitty",), (), ())


def test_files_with_a_byte_order_mark(tmp_path):
    (tmp_path / "v.txt").write_text("\ufeffcat\ndog\n", encoding="utf-8")
    (tmp_path / "v.json").write_text('\ufeff["cat", "dog"]', encoding="utf-8")
    for name in ("v.txt", "v.json"):
        assert parse_vocabulary(tmp_path / name).names == ("cat", "dog"), name


def test_text_file(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# my classes\ncat | kitty | house cat\n\ndog  # pets\n")
    v = parse_vocabulary(f)
    assert v.names == ("cat", "dog") and v.synonyms[0] == ("kitty", "house cat")


@pytest.mark.parametrize(
    "data, names, synonyms",
    [
        (["cat", "dog"], ("cat", "dog"), ((), ())),
        (
            [{"name": "cat", "synonyms": ["kitty"]}, {"name": "dog"}],
            ("cat", "dog"),
            (("kitty",), ()),
        ),
        ({"names": ["a", "b"], "attributes": ["red"]}, ("a", "b"), ((), ())),
        (
            {
                "categories": [
                    {"id": 2, "name": "traffic_cone", "synonyms": ["traffic_cone", "pylon"]},
                    {"id": 1, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"]},
                ]
            },
            ("aerosol can", "traffic cone"),
            (("spray can",), ("pylon",)),
        ),
    ],
)
def test_json_forms(tmp_path, data, names, synonyms):
    f = tmp_path / "v.json"
    f.write_text(json.dumps(data))
    v = parse_vocabulary(f)
    assert v.names == names and v.synonyms == synonyms


def test_builtin_coco():
    v = parse_vocabulary("coco")
    assert len(v) == 80 and v.names[0] == "person" and v.names[-1] == "toothbrush"
    assert COCO80[-1] == (90, "toothbrush") and len({i for i, _ in COCO80}) == 80


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        (" , ", "empty"),
        ("cat,,dog", "empty entry at position 1"),
        ("cat|, dog", "empty name or synonym"),
        ("cat, Cat", "appears twice"),
        ("missing.txt", "not found"),
        ("some/dir/missing.json", "not found"),
        ("[cat, dog]", 'not valid JSON .*a plain list is "cat, dog"'),
        ('["cat", "Cat"]', "appears twice"),
        ("cat,,dog\nbird", "empty entry at position 1"),
        (" \n \n", "empty"),
    ],
)
def test_malformed_inline(spec, message):
    with pytest.raises(VocabularyError, match=message):
        parse_vocabulary(spec)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{bad json", "not valid JSON"),
        ('{"x": 1}', "expected a list of names"),
        ("[1, 2]", "entry 0 must be a name"),
        ('[{"name": "a", "synonyms": "b"}]', "expected a list"),
        ("[]", "empty"),
    ],
)
def test_malformed_json(tmp_path, content, message):
    f = tmp_path / "v.json"
    f.write_text(content)
    with pytest.raises(VocabularyError, match=message):
        parse_vocabulary(f)


def test_empty_text_file(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# nothing\n\n")
    with pytest.raises(VocabularyError, match="no names"):
        parse_vocabulary(f)


def test_templates():
    assert get_templates("vild") == ("a photo of a {} in the scene.",)
    assert len(get_templates("ensemble")) >= 20
    with pytest.raises(ValueError, match="choose from"):
        get_templates("nope")
    with pytest.raises(ValueError, match="exactly one"):
        get_templates(["no slot"])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"names": ["disc"], "synonyms": "disc"}, "one list per name"),
        ({"names": ["disc"], "synonyms": ["disc"]}, "expected a list of strings"),
        ({"names": ["disc"], "attributes": "red"}, "expected a list of strings"),
        ({"names": None}, "expected a list of strings"),
        ({"names": ["disc", 3]}, "holds 3"),
        ([{"name": "disc", "synonyms": "round"}], "expected a list of strings"),
    ],
)
def test_json_strings_are_never_split_into_letters(tmp_path, data, message):
    f = tmp_path / "v.json"
    f.write_text(json.dumps(data))
    with pytest.raises(VocabularyError, match=message):
        parse_vocabulary(str(f))


def test_names_with_a_slash_and_long_lists_are_inline():
    assert parse_vocabulary("AC/DC, cat").names == ("AC/DC", "cat")
    long = ", ".join(f"class {i}" for i in range(60))
    assert len(long) > 255 and len(parse_vocabulary(long)) == 60
    assert parse_vocabulary("cat", attributes="red, blue").attributes == ("red", "blue")
