"""Control tags: parsed from real configs, described, their answers checked strictly and turned into regions
that Label Studio's own validator accepts."""

from __future__ import annotations

import jsonschema
import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.labeling.answers import InvalidAnswer
from backend.labeling.errors import BadExamples, LabelingError, UnsupportedConfig
from backend.labeling.parser import parse_controls
from backend.labeling.spans import find_spans

NER_CONFIG = """<View>
  <Header value="Find the entities"/>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text">
    <Label value="Person" alias="PER" hint="people, by name"/>
    <Label value="LOC" hint="cities, countries, places"/>
    <Label value="ORG"/>
  </Labels>
</View>"""

MIXED_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive" alias="pos" hint="the writer likes it"/><Choice value="Negative" alias="neg"/>
  </Choices>
  <TextArea name="summary" toName="text" maxSubmissions="2" placeholder="One sentence: what is it about?"/>
</View>"""

MULTI_CHOICES = """<View><Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="sports"/><Choice value="politics"/><Choice value="science"/>
  </Choices></View>"""

TAXONOMY_CONFIG = """<View><Text name="text" value="$text"/>
  <Taxonomy name="media" toName="text"{attrs}>
    <Choice value="Online">
      <Choice value="User generated" alias="UGC" hint="posts, comments"/>
      <Choice value="Paywall"><Choice value="NY Times"/><Choice value="The Wall Street Journal"/></Choice>
    </Choice>
    <Choice value="Offline"/>
  </Taxonomy></View>"""

RATING_CONFIG = """<View><Paragraphs name="dialogue" value="$dialogue"/>
  <Rating name="quality" toName="dialogue" maxRating="4"/></View>"""

NUMBER_CONFIG = """<View><HyperText name="page" value="$html"/>
  <Number name="price" toName="page" min="0" max="100" step="0.5"/></View>"""


def controls(config: str):
    return parse_controls(LabelInterface(config))


def control(config: str, name: str):
    return next(c for c in controls(config) if c.name == name)


def lsf_errors(config: str, result: list[dict]) -> list[str]:
    """What Label Studio's SDK finds wrong with a prediction's result (empty when valid)."""
    return LabelInterface(config).validate_prediction({"result": result}, return_errors=True)


def ls_slice(text: str, start: int, end: int) -> str:
    """A span as the Label Studio editor slices it: by code points ([...text] in its domManager)."""
    return "".join(list(text)[start:end])


def utf16_index(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


def assert_valid_answer(c, value):
    """A value in to_answer's form validates against the control's own JSON schema."""
    jsonschema.Draft202012Validator.check_schema(c.schema())
    jsonschema.validate(c.to_answer(value), c.schema())


# --- parsing -------------------------------------------------------------------------------------


def test_labels_choices_and_textarea_on_one_text_are_three_controls_in_config_order():
    parsed = controls(MIXED_CONFIG)
    assert [(c.name, c.tag, c.to_name, c.object_tag) for c in parsed] == [
        ("ner", "Labels", "text", "Text"),
        ("sentiment", "Choices", "text", "Text"),
        ("summary", "TextArea", "text", "Text"),
    ]
    ner, sentiment, summary = parsed
    assert ner.label_values == ("PER", "LOC")
    assert sentiment.label_values == ("pos", "neg") and sentiment.multiple is False
    assert sentiment.labels[0].name == "Positive" and sentiment.labels[0].hint == "the writer likes it"
    assert summary.max_submissions == 2 and summary.placeholder == "One sentence: what is it about?"


@pytest.mark.parametrize(
    "config, named",
    [
        (
            '<View><Image name="img" value="$img"/><RectangleLabels name="box" toName="img"><Label value="car"/>'
            "</RectangleLabels></View>",
            "RectangleLabels",
        ),
        (
            '<View><Image name="img" value="$img"/><Choices name="c" toName="img"><Choice value="a"/></Choices></View>',
            "Image",
        ),
        (
            '<View><Text name="t" value="$t"/><Choices name="c" toName="t" perRegion="true"><Choice value="a"/>'
            "</Choices></View>",
            "perRegion",
        ),
        (
            '<View><Text name="a" value="$a"/><Text name="b" value="$b"/><Choices name="c" toName="a">'
            '<Choice value="x"/></Choices><Rating name="r" toName="b"/></View>',
            "2 objects",
        ),
    ],
)
def test_unsupported_configs_name_the_tag_and_what_is_supported(config, named):
    with pytest.raises(UnsupportedConfig) as info:
        controls(config)
    assert named in str(info.value)
    assert "supported: Choices, Labels, TextArea, Taxonomy, Rating and Number" in str(info.value)


@pytest.mark.parametrize("obj", ["HyperText", "Paragraphs"])
def test_span_labels_on_hypertext_or_paragraphs_are_refused_with_the_way_out(obj):
    config = (
        f'<View><{obj} name="doc" value="$doc"/><Labels name="ner" toName="doc"><Label value="PER"/></Labels></View>'
    )
    with pytest.raises(UnsupportedConfig) as info:
        controls(config)
    message = str(info.value)
    assert "<Labels name='ner'>" in message and obj in message
    assert "span labels on HyperText/Paragraphs are not supported" in message and "use Text" in message


def test_whole_object_controls_on_hypertext_and_paragraphs_are_fine():
    assert control(NUMBER_CONFIG, "price").object_tag == "HyperText"
    assert control(RATING_CONFIG, "quality").object_tag == "Paragraphs"
    choices = (
        '<View><HyperText name="h" value="$h"/><Choices name="c" toName="h"><Choice value="a"/>'
        '<Choice value="b"/></Choices></View>'
    )
    assert control(choices, "c").label_values == ("a", "b")


def test_choices_from_task_data_and_remote_taxonomies_are_refused():
    with pytest.raises(UnsupportedConfig, match="labels from task data"):
        controls('<View><Text name="t" value="$t"/><Choices name="c" toName="t" value="$options"/></View>')
    with pytest.raises(UnsupportedConfig, match="apiUrl"):
        controls('<View><Text name="t" value="$t"/><Taxonomy name="x" toName="t" apiUrl="https://e.x/t.json"/></View>')


# --- Choices -------------------------------------------------------------------------------------


def test_single_choice_schema_description_and_answers():
    c = control(MIXED_CONFIG, "sentiment")
    assert c.schema() == {"type": "string", "enum": ["pos", "neg"]}
    assert "exactly one label from: pos; neg" in c.describe()
    assert "- pos: Positive - the writer likes it" in c.describe()
    assert c.check("pos", "")[0] == ["pos"]
    assert c.check("Positive", "") == (["pos"], {})  # the display name maps onto the stored alias
    assert c.check({"label": " NEG "}, "")[0] == ["neg"]
    assert c.check({"label": "pos", "confidence": 0.9}, "")[0] == ["pos"]
    assert c.check(["neg", "neg"], "")[0] == ["neg"]
    with pytest.raises(InvalidAnswer) as info:
        c.check(["pos", "neg"], "")
    assert info.value.kind == "malformed"
    with pytest.raises(InvalidAnswer) as info:
        c.check("neutral", "")
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check("  ", "")
    assert info.value.kind == "empty"


def test_multiple_choices_keep_config_order_and_refuse_anything_outside():
    c = control(MULTI_CHOICES, "topics")
    assert c.multiple is True
    assert c.schema() == {
        "type": "array",
        "items": {"type": "string", "enum": ["sports", "politics", "science"]},
        "minItems": 1,
    }
    assert c.check(["science", "Sports"], "")[0] == ["sports", "science"]
    assert c.check("science; politics", "")[0] == ["politics", "science"]
    with pytest.raises(InvalidAnswer) as info:
        c.check(["science", "cooking"], "")
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check([], "")
    assert info.value.kind == "empty"


def test_choices_from_result_and_regions_validate():
    c = control(MIXED_CONFIG, "sentiment")
    result = [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}},
        {"from_name": "ner", "to_name": "text", "type": "labels", "value": {"start": 0, "end": 2, "labels": ["PER"]}},
    ]
    assert c.from_result(result, "Al is here") == ["neg"]
    assert c.from_result(result[1:], "Al is here") is None
    assert c.to_answer(["neg"]) == "neg"
    assert_valid_answer(c, ["neg"])
    regions = c.regions(["neg"], "")
    assert regions == [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}}]
    assert lsf_errors(MIXED_CONFIG, regions) == []
    multi = control(MULTI_CHOICES, "topics")
    regions = multi.regions(["sports", "science"], "")
    assert regions[0]["value"] == {"choices": ["sports", "science"]}
    assert lsf_errors(MULTI_CHOICES, regions) == []


def test_choices_from_an_annotation_outside_the_config_is_a_bad_example():
    c = control(MIXED_CONFIG, "sentiment")
    with pytest.raises(BadExamples, match="'meh'"):
        c.from_result([{"from_name": "sentiment", "value": {"choices": ["meh"]}}], "")
    with pytest.raises(BadExamples, match="single-choice"):
        c.from_result([{"from_name": "sentiment", "value": {"choices": ["pos", "neg"]}}], "")


def test_regions_never_hold_a_label_outside_the_config():
    with pytest.raises(InvalidAnswer):
        control(MIXED_CONFIG, "sentiment").regions(["neutral"], "")


# --- Labels (NER): finding quotes ------------------------------------------------------------------


def test_a_repeated_quote_is_every_occurrence_or_the_nth():
    text = "the cat saw the cat"
    assert find_spans(text, "the cat") == [(0, 7), (12, 19)]
    assert find_spans(text, "the cat", occurrence=2) == [(12, 19)]
    assert find_spans(text, "the cat", occurrence=1) == [(0, 7)]
    assert find_spans(text, "the cat", occurrence=3) == []
    assert find_spans(text, "cat") == [(4, 7), (16, 19)]


def test_case_and_whitespace_tolerance_keeps_the_original_offsets():
    text = "She moved to New York last year."
    (span,) = find_spans(text, "new  york")
    assert span == (13, 21) and text[span[0] : span[1]] == "New York"
    text = "Flights from New\n  York, daily"
    (span,) = find_spans(text, "New York")
    assert text[span[0] : span[1]] == "New\n  York"
    assert find_spans("Paris, France", "Paris , France") == [(0, 13)]
    assert find_spans("don’t stop", "don't stop") == [(0, 10)]


def test_exact_matches_come_first_and_whole_words_before_parts_of_words():
    assert find_spans("Apple and apple", "apple") == [(10, 15)]  # exact beats case-folded
    assert find_spans("a category of cat", "cat") == [(14, 17)]  # not inside "category"
    assert find_spans("concatenate", "cat") == [(3, 6)]  # when that is all there is
    assert find_spans("no such thing", "nothing") == [] and find_spans("text", "  ") == []


def test_leading_spaces_in_the_text_count():
    text = "   \n  Marie Curie won."
    assert find_spans(text, "Marie Curie") == [(6, 17)]


@pytest.mark.parametrize(
    "text, quote, expected",
    [
        ("Rendez-vous au Café de Flore à Paris", "Café de Flore", (15, 28)),
        ("Rendez-vous au Café de Flore à Paris", "café  de flore", (15, 28)),
        ("東京で会議があります", "東京", (0, 2)),
        ("明日、東京で会議", "会議", (6, 8)),
        ("I ❤️ Paris 🇫🇷 today", "today", (14, 19)),
        ("I ❤️ Paris 🇫🇷 today", "🇫🇷", (11, 13)),
        ("I ❤️ Paris 🇫🇷 today", "❤️", (2, 4)),
    ],
)
def test_unicode_offsets_are_code_points_as_label_studio_stores_them(text, quote, expected):
    (span,) = find_spans(text, quote)
    assert span == expected
    assert ls_slice(text, *span).casefold().split() == quote.casefold().split()


def test_emoji_offsets_are_not_utf16_code_units():
    # Label Studio's editor counts [...text] (code points); a browser's UTF-16 index would be 2 further on.
    text = "I ❤️ Paris 🇫🇷 today"
    ((start, end),) = find_spans(text, "today")
    assert (start, end) == (14, 19) and utf16_index(text, start) == 16


# --- Labels (NER): the control ---------------------------------------------------------------------


def test_labels_description_and_schema():
    c = control(NER_CONFIG, "ner")
    assert c.label_values == ("PER", "LOC", "ORG")
    text = c.describe()
    assert "quote each entity exactly as it appears in the text" in text
    assert "- PER: Person - people, by name" in text and "- LOC: cities, countries, places" in text
    schema = c.schema()
    assert schema["type"] == "array"
    assert schema["items"]["properties"]["label"] == {"type": "string", "enum": ["PER", "LOC", "ORG"]}
    assert schema["items"]["required"] == ["text", "label", "occurrence"]
    jsonschema.Draft202012Validator.check_schema(schema)


def test_labels_check_finds_every_entity_drops_and_counts_the_rest():
    c = control(NER_CONFIG, "ner")
    text = "the cat saw the cat near new  York and Bob"
    value, notes = c.check(
        [
            {"text": "the cat", "label": "PER"},  # both appearances
            {"text": "New York", "label": "LOC"},  # whitespace and case tolerated
            {"text": "Bob", "labels": ["Person"]},  # the display name means the stored alias
            {"text": "Alice", "label": "PER"},  # not in the text
            {"text": "Bob", "label": "DATE"},  # not a label of the config
            {"text": "cat", "label": "MISC"},
            "garbage",
        ],
        text,
    )
    assert value == [
        {"text": "the cat", "label": "PER", "start": 0, "end": 7, "occurrence": 1},
        {"text": "the cat", "label": "PER", "start": 12, "end": 19, "occurrence": 2},
        {"text": "new  York", "label": "LOC", "start": 25, "end": 34},
        {"text": "Bob", "label": "PER", "start": 39, "end": 42},
    ]
    assert notes == {"dropped_label": 2, "dropped_not_found": 1, "dropped_malformed": 1}


def test_labels_check_with_an_occurrence_takes_only_that_one():
    c = control(NER_CONFIG, "ner")
    text = "the cat saw the cat"
    value, notes = c.check([{"text": "cat", "label": "ORG", "occurrence": 2}], text)
    assert value == [{"text": "cat", "label": "ORG", "start": 16, "end": 19, "occurrence": 2}] and notes == {}
    (region,) = c.regions(value, text)
    assert (region["value"]["start"], region["value"]["end"]) == (16, 19)
    value, notes = c.check([{"text": "cat", "label": "ORG", "occurrence": 3}, {"text": "saw", "label": "ORG"}], text)
    assert value == [{"text": "saw", "label": "ORG", "start": 8, "end": 11}] and notes == {"dropped_not_found": 1}


def test_an_annotated_span_inside_a_word_keeps_its_offsets():
    # "Apple" marked inside "AppleCare": searching for the quote alone would find the standalone "Apple".
    c = control(NER_CONFIG, "ner")
    text = "Apple sells AppleCare"
    result = [
        {
            "from_name": "ner",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 12, "end": 17, "text": "Apple", "labels": ["ORG"]},
        }
    ]
    value = c.from_result(result, text)
    (region,) = c.regions(value, text)
    assert (region["value"]["start"], region["value"]["end"]) == (12, 17)
    assert c.to_answer(value) == [{"text": "Apple", "label": "ORG", "occurrence": None}]  # the prompt's form


def test_stated_offsets_that_do_not_hold_the_quote_are_ignored():
    c = control(NER_CONFIG, "ner")
    value, _ = c.check([{"text": "Paris", "label": "LOC", "start": 0, "end": 5}], "I ❤️ Paris")
    assert [(e["start"], e["end"]) for e in value] == [(5, 10)]


def test_labels_nothing_usable_is_invalid_but_no_entities_is_an_answer():
    c = control(NER_CONFIG, "ner")
    with pytest.raises(InvalidAnswer) as info:
        c.check([{"text": "Alice", "label": "PER"}, {"text": "cat", "label": "DATE"}], "the cat")
    assert info.value.kind == "out_of_set"
    assert c.check([], "the cat") == ([], {})
    assert c.regions([], "the cat") == []
    with pytest.raises(InvalidAnswer) as info:
        c.check("the cat is PER", "the cat")
    assert info.value.kind == "malformed"


def test_labels_regions_validate_and_their_text_is_the_slice():
    c = control(NER_CONFIG, "ner")
    text = "  Bob met Bob in Paris"
    value, _ = c.check([{"text": "bob", "label": "PER"}, {"text": "Paris", "label": "LOC"}], text)
    regions = c.regions(value, text)
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in regions] == [
        (2, 5, ["PER"]),
        (10, 13, ["PER"]),
        (17, 22, ["LOC"]),
    ]
    assert all(r["from_name"] == "ner" and r["to_name"] == "text" and r["type"] == "labels" for r in regions)
    assert all("id" not in r for r in regions)
    assert all(r["value"]["text"] == text[r["value"]["start"] : r["value"]["end"]] for r in regions)
    assert lsf_errors(NER_CONFIG, regions) == []


@pytest.mark.parametrize(
    "text, entities",
    [
        ("Rendez-vous au Café de Flore à Paris", [("café de flore", "LOC"), ("Paris", "LOC")]),
        ("明日、東京で会議があります", [("東京", "LOC")]),
        ("I ❤️ Paris 🇫🇷 today with Zoë 👩‍👩‍👧", [("Paris", "LOC"), ("🇫🇷", "ORG"), ("zoë", "PER")]),
    ],
)
def test_unicode_regions_slice_like_label_studio(text, entities):
    c = control(NER_CONFIG, "ner")
    value, notes = c.check([{"text": quote, "label": label} for quote, label in entities], text)
    assert notes == {}
    regions = c.regions(value, text)
    assert len(regions) == len(entities)
    for region, (quote, _label) in zip(regions, entities):
        v = region["value"]
        assert v["text"] == ls_slice(text, v["start"], v["end"])
        assert v["text"].casefold() == quote.casefold()
    assert lsf_errors(NER_CONFIG, regions) == []


def test_labels_from_result_marks_repeated_text_with_its_occurrence():
    c = control(NER_CONFIG, "ner")
    text = "the cat saw the cat and I ❤️ Paris"
    result = [
        {
            "from_name": "ner",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 29, "end": 34, "text": "Paris", "labels": ["LOC"]},
        },
        {
            "from_name": "ner",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 16, "end": 19, "text": "cat", "labels": ["PER"]},
        },
        {"from_name": "other", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}},
    ]
    value = c.from_result(result, text)
    assert value == [
        {"text": "cat", "label": "PER", "start": 16, "end": 19, "occurrence": 2},
        {"text": "Paris", "label": "LOC", "start": 29, "end": 34},
    ]
    assert_valid_answer(c, value)
    assert c.check(value, text) == (value, {})  # a demonstration's answer is an answer
    regions = c.regions(value, text)
    assert sorted((r["value"]["start"], r["value"]["end"]) for r in regions) == [(16, 19), (29, 34)]
    assert c.from_result([result[2]], text) is None


def test_labels_from_an_annotation_that_does_not_fit_is_a_bad_example():
    c = control(NER_CONFIG, "ner")
    with pytest.raises(BadExamples, match="'DATE'"):
        c.from_result([{"from_name": "ner", "value": {"start": 0, "end": 3, "labels": ["DATE"]}}], "the cat")
    with pytest.raises(BadExamples, match="not inside the text"):
        c.from_result([{"from_name": "ner", "value": {"start": 4, "end": 30, "labels": ["PER"]}}], "the cat")
    with pytest.raises(BadExamples, match="its stored text is"):
        c.from_result(
            [{"from_name": "ner", "value": {"start": 0, "end": 3, "text": "dog", "labels": ["PER"]}}], "the cat"
        )


# --- TextArea ------------------------------------------------------------------------------------


def test_textarea_schema_description_check_and_regions():
    c = control(MIXED_CONFIG, "summary")
    assert c.schema() == {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert "One sentence: what is it about?" in c.describe() and "at most 2" in c.describe()
    assert c.check("  A cat story. ", "") == (["A cat story."], {})
    value, notes = c.check([" one ", "", "   ", "two", "three"], "")
    assert value == ["one", "two"] and notes == {"dropped_empty": 2, "cut": 1}
    with pytest.raises(InvalidAnswer) as info:
        c.check(["  ", ""], "")
    assert info.value.kind == "empty"
    with pytest.raises(InvalidAnswer) as info:
        c.check({"a": 1, "b": 2}, "")
    assert info.value.kind == "malformed"
    assert_valid_answer(c, value)
    regions = c.regions(value, "")
    assert regions == [
        {"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": ["one", "two"]}}
    ]
    assert lsf_errors(MIXED_CONFIG, regions) == []
    result = [{"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": ["A story. "]}}]
    assert c.from_result(result, "") == ["A story."]
    assert c.from_result([], "") is None


# --- Taxonomy ------------------------------------------------------------------------------------


def test_taxonomy_parse_tree_schema_and_description():
    c = control(TAXONOMY_CONFIG.format(attrs=""), "media")
    assert c.tree == (
        ("Online", (("UGC", ()), ("Paywall", (("NY Times", ()), ("The Wall Street Journal", ()))))),
        ("Offline", ()),
    )
    assert c.multiple is True
    assert c.label_values == ("Online", "UGC", "Paywall", "NY Times", "The Wall Street Journal", "Offline")
    schema = c.schema()
    assert schema["items"]["items"]["enum"] == list(c.label_values) and "maxItems" not in schema
    text = c.describe()
    assert "    - UGC: User generated - posts, comments" in text and "      - NY Times" in text


def test_taxonomy_check_is_tolerant_in_form_and_strict_in_content():
    c = control(TAXONOMY_CONFIG.format(attrs=""), "media")
    assert c.check([["Online", "Paywall", "NY Times"]], "")[0] == [["Online", "Paywall", "NY Times"]]
    assert c.check(["online", "user generated"], "")[0] == [["Online", "UGC"]]  # one path, names tolerated
    assert c.check("Online / Paywall", "")[0] == [["Online", "Paywall"]]
    assert c.check(["NY Times", "Offline"], "")[0] == [["Online", "Paywall", "NY Times"], ["Offline"]]
    with pytest.raises(InvalidAnswer) as info:
        c.check([["Online", "Radio"]], "")
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check([["Offline", "NY Times"]], "")  # a real node, on the wrong branch
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check([], "")
    assert info.value.kind == "empty"


def test_taxonomy_leafs_only_and_max_usages():
    c = control(TAXONOMY_CONFIG.format(attrs=' leafsOnly="true" maxUsages="1"'), "media")
    assert c.multiple is False and c.leafs_only is True and c.schema()["maxItems"] == 1
    assert "exactly one path" in c.describe() and "ending at a leaf" in c.describe()
    with pytest.raises(InvalidAnswer) as info:
        c.check([["Online", "Paywall"]], "")
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check([["Offline"], ["Online", "UGC"]], "")
    assert info.value.kind == "malformed"
    assert c.check([["Offline"]], "")[0] == [["Offline"]]


def test_taxonomy_from_result_and_regions_validate():
    config = TAXONOMY_CONFIG.format(attrs="")
    c = control(config, "media")
    result = [
        {
            "from_name": "media",
            "to_name": "text",
            "type": "taxonomy",
            "value": {"taxonomy": [["Online", "UGC"], ["Offline"]]},
        }
    ]
    value = c.from_result(result, "")
    assert value == [["Online", "UGC"], ["Offline"]]
    assert_valid_answer(c, value)
    regions = c.regions(value, "")
    assert regions == [
        {
            "from_name": "media",
            "to_name": "text",
            "type": "taxonomy",
            "value": {"taxonomy": [["Online", "UGC"], ["Offline"]]},
        }
    ]
    assert lsf_errors(config, regions) == []
    with pytest.raises(BadExamples):
        c.from_result([{"from_name": "media", "value": {"taxonomy": [["Online", "Radio"]]}}], "")


# --- Rating --------------------------------------------------------------------------------------


def test_rating_schema_check_and_regions():
    c = control(RATING_CONFIG, "quality")
    assert (c.minimum, c.maximum) == (1, 4)
    assert c.schema() == {"type": "integer", "minimum": 1, "maximum": 4}
    assert "from 1 to 4" in c.describe()
    assert c.check(3, "") == (3, {})
    assert c.check("4", "")[0] == 4 and c.check("3/4", "")[0] == 3 and c.check(2.0, "")[0] == 2
    assert c.check({"rating": 1}, "")[0] == 1
    for bad in (0, 5, 3.5, "6/4"):
        with pytest.raises(InvalidAnswer) as info:
            c.check(bad, "")
        assert info.value.kind in ("out_of_set", "malformed"), bad
    with pytest.raises(InvalidAnswer) as info:
        c.check(5, "")  # not clamped to 4
    assert info.value.kind == "out_of_set"
    for bad in ("good", True, [3]):
        with pytest.raises(InvalidAnswer) as info:
            c.check(bad, "")
        assert info.value.kind == "malformed", bad
    regions = c.regions(3, "")
    assert regions == [{"from_name": "quality", "to_name": "dialogue", "type": "rating", "value": {"rating": 3}}]
    assert lsf_errors(RATING_CONFIG, regions) == []
    assert c.from_result([{"from_name": "quality", "value": {"rating": 2}}], "") == 2
    assert c.from_result([{"from_name": "quality", "value": {"rating": None}}], "") is None
    assert c.from_result([{"from_name": "quality", "value": {"rating": 0}}], "") is None  # the unrated default
    assert c.check({"rating": "4", "reason": "clear and polite"}, "")[0] == 4


def test_rating_defaults_to_five():
    config = '<View><Text name="t" value="$t"/><Rating name="r" toName="t"/></View>'
    assert control(config, "r").schema() == {"type": "integer", "minimum": 1, "maximum": 5}


# --- Number --------------------------------------------------------------------------------------


def test_number_schema_check_and_regions():
    c = control(NUMBER_CONFIG, "price")
    assert (c.minimum, c.maximum, c.step) == (0, 100, 0.5)
    assert c.schema() == {"type": "number", "minimum": 0, "maximum": 100}
    assert "at least 0, at most 100, in steps of 0.5" in c.describe()
    assert c.check(12.5, "") == (12.5, {}) and c.check("42", "")[0] == 42 and c.check(7.0, "")[0] == 7
    with pytest.raises(InvalidAnswer) as info:
        c.check(100.5, "")  # above max: refused, not clamped
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check(-1, "")
    assert info.value.kind == "out_of_set"
    with pytest.raises(InvalidAnswer) as info:
        c.check(12.25, "")  # off the step
    assert info.value.kind == "out_of_set"
    for bad in ("cheap", float("nan"), 10**400, None):
        with pytest.raises(InvalidAnswer) as info:
            c.check(bad, "")
        assert info.value.kind in ("malformed", "empty"), bad
    regions = c.regions(12.5, "")
    assert regions == [{"from_name": "price", "to_name": "page", "type": "number", "value": {"number": 12.5}}]
    assert lsf_errors(NUMBER_CONFIG, regions) == []
    assert c.from_result([{"from_name": "price", "value": {"number": 3.0}}], "") == 3
    with pytest.raises(BadExamples):
        c.from_result([{"from_name": "price", "value": {"number": 300}}], "")


def test_number_with_an_integer_step_is_an_integer_and_no_bounds_is_any_number():
    config = (
        '<View><Text name="t" value="$t"/><Number name="n" toName="t" min="1" step="1"/>'
        '<Number name="any" toName="t"/></View>'
    )
    n, free = controls(config)
    assert n.schema() == {"type": "integer", "minimum": 1}
    assert free.schema() == {"type": "number"} and free.check(-3.25, "")[0] == -3.25
    with pytest.raises(InvalidAnswer):
        n.check(2.5, "")


# --- everything at once ---------------------------------------------------------------------------


def test_one_answer_for_every_control_of_a_config_validates_as_one_prediction():
    text = "Bob liked Paris. Bob did."
    answer = {
        "ner": [{"text": "Bob", "label": "PER", "occurrence": None}, {"text": "paris", "label": "LOC"}],
        "sentiment": "Positive",
        "summary": ["Bob in Paris"],
    }
    result = []
    for c in controls(MIXED_CONFIG):
        value, _notes = c.check(answer[c.name], text)
        assert_valid_answer(c, value)
        result += c.regions(value, text)
    assert len(result) == 5  # two Bobs, Paris, the choice, the text
    assert lsf_errors(MIXED_CONFIG, result) == []
    read_back = {c.name: c.from_result(result, text) for c in controls(MIXED_CONFIG)}
    assert read_back == {
        "ner": [
            {"text": "Bob", "label": "PER", "start": 0, "end": 3, "occurrence": 1},
            {"text": "Paris", "label": "LOC", "start": 10, "end": 15},
            {"text": "Bob", "label": "PER", "start": 17, "end": 20, "occurrence": 2},
        ],
        "sentiment": ["pos"],
        "summary": ["Bob in Paris"],
    }


def test_a_control_made_by_hand_cannot_build_regions():
    from backend.labeling.controls.base import Control

    with pytest.raises(LabelingError, match="parse_controls"):
        Control(name="r", tag="Rating", to_name="t", minimum=1, maximum=5).regions(3, "")
