"""Labeling configs become a LabelingSpec, or an error that names the tag and what is supported."""

import pytest

from backend.labeling.errors import MissingText, UnsupportedConfig
from backend.labeling.parser import parse_spec
from tests.conftest import MULTI_CONFIG, SEEDS, SENTIMENT_CONFIG


def test_sentiment_config_gives_labels_key_and_single_choice():
    spec = parse_spec(SENTIMENT_CONFIG)
    assert spec.label_values == ("positive", "negative")
    assert (spec.control_name, spec.object_name, spec.data_key) == ("sentiment", "text", "text")
    assert spec.multiple is False


def test_multiple_choice_is_recognized():
    assert parse_spec(MULTI_CONFIG).multiple is True


def test_hint_and_alias_are_kept_and_alias_is_the_stored_value():
    spec = parse_spec((SEEDS / "support" / "config.xml").read_text())
    technical = next(label for label in spec.labels if label.name == "Technical issue")
    assert technical.value == "technical"
    assert "crashes" in technical.hint
    assert spec.data_key == "ticket"


@pytest.mark.parametrize(
    "config, tag",
    [
        (
            '<View><Image name="i" value="$img"/><RectangleLabels name="b" toName="i"><Label value="car"/>'
            "</RectangleLabels></View>",
            "RectangleLabels",
        ),
        (
            '<View><Image name="i" value="$img"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
            "Image",
        ),
        (
            '<View><HyperText name="h" value="$html"/><Labels name="ner" toName="h"><Label value="PER"/></Labels>'
            "</View>",
            "HyperText",
        ),
    ],
)
def test_unsupported_tags_are_named_with_what_is_supported(config, tag):
    with pytest.raises(UnsupportedConfig) as info:
        parse_spec(config)
    assert tag in str(info.value) and "supported" in str(info.value)


@pytest.mark.parametrize("config", ["", "<View>", "not xml at all", "<View><Text name='t' value='$t'/></View>"])
def test_broken_or_empty_configs_are_explained(config):
    with pytest.raises(UnsupportedConfig):
        parse_spec(config)


def test_url_valued_text_is_refused_because_task_urls_are_not_fetched():
    config = (
        '<View><Text name="t" value="$url" valueType="url"/>'
        '<Choices name="c" toName="t"><Choice value="a"/></Choices></View>'
    )
    with pytest.raises(UnsupportedConfig, match="does not fetch"):
        parse_spec(config)


def test_hypertext_is_stripped_to_its_text():
    config = (
        '<View><HyperText name="h" value="$html"/><Choices name="c" toName="h"><Choice value="a"/></Choices></View>'
    )
    spec = parse_spec(config)
    text = spec.text_of({"html": "<p>Hello <b>world</b> &amp; more</p><script>x=1</script>"})
    assert text == "Hello world & more"


def test_paragraphs_are_flattened_to_speaker_lines():
    config = (
        '<View><Paragraphs name="p" value="$dialogue" layout="dialogue"/>'
        '<Choices name="c" toName="p"><Choice value="a"/></Choices></View>'
    )
    spec = parse_spec(config)
    data = {"dialogue": [{"author": "Ann", "text": "Hi"}, {"author": "Bob", "text": "Hello there"}]}
    assert spec.text_of(data) == "Ann: Hi\nBob: Hello there"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"other": "x"}, "no key 'text'"),
        ({"text": 5}, "must be a string"),
        ({"text": "   "}, "empty"),
        ("not a dict", "must be an object"),
    ],
)
def test_tasks_without_usable_text_say_why(data, message):
    with pytest.raises(MissingText, match=message):
        parse_spec(SENTIMENT_CONFIG).text_of(data)


@pytest.mark.parametrize("attr", ["perRegion", "perItem"])
def test_a_lone_per_region_choices_is_refused_like_any_per_region_control(attr):
    """One Choices control takes the fast path; it must refuse what the per-control parser refuses."""
    lone = (
        f'<View><Text name="t" value="$t"/><Choices name="c" toName="t" {attr}="true">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    with pytest.raises(UnsupportedConfig, match=attr):
        parse_spec(lone)
    with pytest.raises(UnsupportedConfig, match=attr):  # the same control next to another one
        parse_spec(lone.replace("</View>", '<TextArea name="note" toName="t"/></View>'))
