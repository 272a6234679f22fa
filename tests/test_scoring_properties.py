"""Property tests: random label sets and distributions, declared to the reference server, labeled through the
real openai client; the chosen label must be the declared argmax and the score the declared probability.

Labels come from a pool chosen to be hard for a reader of token alternatives: prefixes of each other
("Sci" / "Sci/Tech", "World" / "World News", "Bill" / "Billing"), shared first tokens ("Neuroscience" /
"Neurology", "Complaint" / "Compliment"), several tokens, bytes of one character split over tokens
("Négatif"). Each label's mass is split over case and leading-space variants; plain answers may open with a
leading phrase or close with a period; the server may show the end of the answer (vLLM) or hide it (OpenAI).

Where the shown alternatives cannot determine the answer (`Analysis.recoverable`, computed from the truth),
the test still checks that the score is what a correct reader of exactly those alternatives finds
(`Analysis.reading`: the same walk over the truth's own masses); the declared argmax and probability are
asserted wherever they are recoverable, and hypothesis must find enough such cases (`assume`).
"""

import logging
import os

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from backend.devtools.fake_llm import FakeLLM
from backend.devtools.fake_llm.reference import Truth, analyse
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler
from tests.conftest import llm_settings

POOL = [
    "Positive",
    "Negative",
    "Neutral",
    "Sci",
    "Sci/Tech",
    "Science",
    "World",
    "World News",
    "Sports",
    "Business",
    "Neuroscience",
    "Neurology",
    "Physics",
    "Bill",
    "Billing",
    "Refund",
    "Refusal",
    "Complaint",
    "Compliment",
    "Health",
    "Healthcare",
    "ABBR",
    "HUM",
    "LOC",
    "Négatif",
    "Technical issue",
]
TASK = "Is this review about the product or the delivery?"
DEMOS = [Example("It broke after a day.", ("Negative",), "seed", "1")]
EXAMPLES = settings(
    max_examples=int(os.environ.get("SCORING_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

logging.getLogger("backend.model.client").setLevel(logging.ERROR)  # the stand-in warning, once per labeler


def config(labels) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return f'<View><Text name="text" value="$text"/><Choices name="c" toName="text">{choices}</Choices></View>'


def spellings(label: str, echo: bool) -> list[str]:
    variants = [label, label.lower(), label[:1].upper() + label[1:]]
    if not echo:
        variants += [label.upper(), " " + label, " " + label.lower()]
    return list(dict.fromkeys(variants))


@st.composite
def truths(draw, echo: bool = False):
    labels = draw(st.lists(st.sampled_from(POOL), min_size=2, max_size=6, unique_by=str.casefold))
    weights = {label: draw(st.integers(1, 100)) for label in labels}
    forms = {}
    for label in labels:
        chosen = draw(st.lists(st.sampled_from(spellings(label, echo)), min_size=1, max_size=3, unique=True))
        forms[label] = {form: draw(st.integers(1, 10)) for form in chosen}
    shapes = [["", "", draw(st.integers(1, 10))]]
    for shape in (["The label is ", "", 0], ["Label: ", "", 0], ["", ".", 0]):
        if draw(st.booleans()):
            shapes.append([shape[0], shape[1], draw(st.integers(1, 10))])
    truth = {"labels": weights, "forms": forms, "shapes": shapes, "end": draw(st.booleans())}
    return labels, truth


@pytest.fixture(scope="module")
def server():
    with FakeLLM(reference=1) as fake:
        yield fake


def label(server, labels, truth, mode, top_k, scoring="answer"):
    server.declare({TASK: truth})
    configured = llm_settings(server, answer_mode=mode, top_logprobs=top_k, scoring=scoring, answer_retries=0)
    labeler = Labeler(parse_spec(config(labels)), DEMOS, configured, LLMClient(configured))
    return labeler.label_text(TASK)


@pytest.mark.parametrize("mode", ["json", "logprobs", "text"])
@EXAMPLES
@given(case=truths(), top_k=st.sampled_from([20, 20, 10, 5]))
def test_answer_scores_are_the_declared_distribution_where_the_alternatives_show_it(server, mode, case, top_k):
    labels, truth = case
    spec = parse_spec(config(labels))
    analysis = analyse(Truth.from_json(truth), "json" if mode == "json" else "text", top_k, spec)
    outcome = label(server, labels, truth, mode, top_k)
    assert outcome.error is None and set(outcome.labels) <= set(labels)
    # Always: the score is what a correct reader of exactly these alternatives finds (a tie, to rounding,
    # may be decided either way).
    ideal, margin = analysis.ideal, analysis.reading.margin()
    if margin > 1e-9 and ideal is not None:
        best = max(ideal, key=ideal.get)
        assert outcome.labels == (best,) and outcome.score == pytest.approx(ideal[best], abs=1e-9)
    elif margin < -1e-9 or ideal is None:
        assert outcome.score is None
    event(f"argmax recoverable: {analysis.recoverable}; score exact: {analysis.exact}")
    if analysis.recoverable:
        assert outcome.labels == (analysis.argmax,)
    assume(analysis.exact)
    assert outcome.score == pytest.approx(analysis.probabilities[analysis.argmax], abs=0.01)


@EXAMPLES
@given(case=truths(echo=True))
def test_echo_scores_are_the_declared_distribution_always(server, case):
    labels, truth = case
    truth = {**truth, "shapes": [["", "", 1]]}
    declared = Truth.from_json(truth).probabilities()
    ranked = sorted(declared.values(), reverse=True)
    assume(ranked[0] - ranked[1] > 1e-6)  # a tie has no argmax to find
    outcome = label(server, labels, truth, "logprobs", 0, scoring="echo")
    argmax = max(declared, key=declared.get)
    assert outcome.labels == (argmax,) and outcome.score == pytest.approx(declared[argmax], abs=1e-9)
    assert outcome.distribution == pytest.approx(declared, abs=1e-9)
