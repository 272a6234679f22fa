"""Prompts: the original template, chat layout, deterministic order and stable hashes."""

import json

import pytest

from backend.labeling.errors import BadTemplate
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import (
    DEFAULT_TEMPLATE,
    PromptSettings,
    build_messages,
    json_schema,
    order_examples,
    render_demonstration,
    render_query,
)
from tests.conftest import MULTI_CONFIG, SENTIMENT_CONFIG

SPEC = parse_spec(SENTIMENT_CONFIG)
EXAMPLES = [
    Example("John is happy.", ("positive",), "seed", "s:1"),
    Example("Mary is sad.", ("negative",), "seed", "s:2"),
]


def test_default_template_is_the_original_algorithm():
    assert (
        render_demonstration(DEFAULT_TEMPLATE, "John is happy.", "positive")
        == "John is happy. [SEP] The label of the above text is positive"
    )
    assert render_query(DEFAULT_TEMPLATE, "Lisa is sad.") == "Lisa is sad. [SEP] The label of the above text is"


def test_texts_with_braces_render_literally():
    assert render_query("Q: {text} A: {label}", "{label} {0} {text}") == "Q: {label} {0} {text} A:"


@pytest.mark.parametrize("template", ["{text}", "{label} {text}", "no placeholders", "{text} {label} {label}"])
def test_bad_templates_are_refused(template):
    with pytest.raises(BadTemplate):
        PromptSettings(model="m", template=template)


def test_messages_are_instruction_pairs_then_query():
    messages = build_messages(SPEC, EXAMPLES, "Lisa is sad.", PromptSettings(model="m", mode="text"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Allowed labels: positive; negative" in messages[0]["content"]
    assert messages[1]["content"] == "John is happy. [SEP] The label of the above text is"
    assert messages[2]["content"] == "positive"
    assert messages[-1]["content"].startswith("Lisa is sad.")


def test_json_mode_demonstrations_answer_in_json_and_schema_is_an_enum():
    messages = build_messages(SPEC, EXAMPLES, "x", PromptSettings(model="m", mode="json"))
    assert json.loads(messages[2]["content"]) == {"label": "positive"}
    assert json_schema(SPEC)["properties"]["label"]["enum"] == ["positive", "negative"]
    multi = json_schema(parse_spec(MULTI_CONFIG))["properties"]["labels"]
    assert multi["type"] == "array" and multi["items"]["enum"] == ["sports", "politics", "science", "food"]


def test_order_is_deterministic_seeds_first_then_tasks_by_id():
    shuffled = [
        Example("c", ("positive",), "annotation", "10"),
        Example("b", ("negative",), "annotation", "9"),
        Example("a", ("positive",), "seed", "f:1"),
        Example("b", ("negative",), "annotation", "9"),
    ]
    assert [e.text for e in order_examples(shuffled)] == ["a", "b", "c"]
    assert order_examples(shuffled) == order_examples(list(reversed(shuffled)))


def test_span_configs_get_an_extraction_template_unless_one_was_chosen():
    from backend.labeling.prompt import SPAN_TEMPLATE, STRUCTURED_TEMPLATE, for_config

    ner = parse_spec(
        '<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="PER"/></Labels></View>'
    )
    mixed = parse_spec(
        '<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="PER"/>'
        '</Labels><TextArea name="note" toName="text"/></View>'
    )
    classic = PromptSettings(model="m")
    assert for_config(classic, ner).template == SPAN_TEMPLATE
    assert render_query(SPAN_TEMPLATE, "Bob is here") == "Text: Bob is here\nEntities:"
    assert for_config(classic, mixed).template == STRUCTURED_TEMPLATE
    assert for_config(classic, SPEC) is classic  # one Choices control: the original algorithm
    chosen = PromptSettings(model="m", template="Sentence: {text}\nNamed entities: {label}")
    assert for_config(chosen, ner) is chosen
    from backend.labeling.fingerprint import fingerprint

    assert fingerprint(ner, [], for_config(classic, ner)).model_version != fingerprint(ner, [], classic).model_version
