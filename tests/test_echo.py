"""Echo scoring's pure parts: the prompt in the algorithm's text form, the continuations, reading echoed tokens.

(End to end against the reference server: test_scoring.py and test_scoring_properties.py.)
"""

import math

import pytest

from backend.labeling.echo import (
    EchoChoice,
    EchoUnusable,
    continuation_logprob,
    continuations,
    echo_distribution,
    echo_prompt,
    echo_request,
)
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, build_messages


def config(*labels: str) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return f'<View><Text name="text" value="$text"/><Choices name="c" toName="text">{choices}</Choices></View>'


SPEC = parse_spec(config("Positive", "negative", "Sci/Tech"))


def test_the_prompt_is_the_classic_text_form():
    messages = build_messages(
        SPEC,
        [Example("Great!", ("Positive",)), Example("Awful.", ("negative",))],
        "Meh.",
        PromptSettings(model="m", mode="logprobs"),
    )
    prompt = echo_prompt(messages)
    assert prompt.startswith(messages[0]["content"] + "\n\n")
    assert prompt.endswith(
        "\n\nGreat! [SEP] The label of the above text is Positive\n\n"
        "Awful. [SEP] The label of the above text is negative\n\n"
        "Meh. [SEP] The label of the above text is"
    )


def test_each_label_is_scored_as_written_lowercase_and_capitalized_up_to_the_blank_line():
    assert continuations(SPEC) == [
        ("Positive", " Positive\n\n"),
        ("Positive", " positive\n\n"),
        ("negative", " negative\n\n"),
        ("negative", " Negative\n\n"),
        ("Sci/Tech", " Sci/Tech\n\n"),
        ("Sci/Tech", " sci/tech\n\n"),
    ]
    shared = parse_spec(config("us", "US"))  # a label's value is its own; other shared spellings name neither
    assert continuations(shared) == [("us", " us\n\n"), ("us", " Us\n\n"), ("US", " US\n\n")]


def choice(prompt: str, tokens: list[str], logprobs: list, generated: str = "") -> EchoChoice:
    return EchoChoice(prompt + generated, tuple(tokens), tuple(logprobs))


def test_the_continuation_is_read_back_from_the_end_of_the_prompt():
    prompt = "x is Sci/Tech\n\n"
    tokens = ["<s>", "x", " is", " Sci", "/T", "ech", "\n\n", " The"]  # a BOS token, a generated token
    logprobs = [None, -9.0, -9.0, -1.0, -0.5, -0.25, -0.125, -3.0]
    assert continuation_logprob(prompt, len("x is"), choice(prompt, tokens, logprobs, " The")) == -1.875
    assert continuation_logprob(prompt, len("x is"), choice(prompt, tokens[:-1] + [""], logprobs)) == -1.875
    straddling = ["x", " is Sci", "/T", "ech", "\n\n"]  # a token that starts before the label counts whole
    assert continuation_logprob(prompt, len("x is"), choice(prompt, straddling, [None, -1.0, -1.0, -1.0, -1.0])) == -4


@pytest.mark.parametrize(
    "reply",
    [
        EchoChoice(" Positive", (" Positive",), (-0.1,)),  # the prompt is not echoed
        EchoChoice("x is Positive\n\n", ("x", " is", " Positive", "\n\n"), (None, None, None, None)),
        EchoChoice("x is Positive\n\n", ("x", " is", " Neg", "\n\n"), (None, -1.0, -1.0, -1.0)),
    ],
)
def test_a_reply_that_does_not_echo_the_prompt_with_logprobs_is_unusable(reply):
    with pytest.raises(EchoUnusable):
        continuation_logprob("x is Positive\n\n", len("x is"), reply)


def test_the_distribution_sums_each_labels_spellings():
    messages = [{"role": "user", "content": "x is"}]
    request = echo_request(messages, SPEC, "m")
    probabilities = {
        " Positive\n\n": 0.3,
        " positive\n\n": 0.1,
        " negative\n\n": 0.2,
        " Negative\n\n": 0.2,
        " Sci/Tech\n\n": 0.15,
        " sci/tech\n\n": 0.05,
    }
    replies = [
        choice(prompt, ["x", " is", text], [None, -1.0, math.log(probabilities[text])])
        for prompt, (_, text) in zip(request["prompt"], continuations(SPEC))
    ]
    assert echo_distribution(request, replies, SPEC) == pytest.approx(
        {"Positive": 0.4, "negative": 0.4, "Sci/Tech": 0.2}
    )
    with pytest.raises(EchoUnusable):
        echo_distribution(request, replies[:-1], SPEC)
