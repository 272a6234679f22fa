"""Results for Label Studio are built by the SDK and validate against the config."""

import pytest

from backend.labeling.errors import LabelingError
from backend.labeling.parser import parse_spec
from backend.labeling.results import prediction_errors, result_regions
from tests.conftest import MULTI_CONFIG, SENTIMENT_CONFIG


def test_single_choice_region():
    spec = parse_spec(SENTIMENT_CONFIG)
    result = result_regions(spec, ("negative",))
    assert result == [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}
    ]
    assert prediction_errors(spec, result) == []


def test_multiple_choice_region_validates():
    spec = parse_spec(MULTI_CONFIG)
    result = result_regions(spec, ("sports", "food"))
    assert result[0]["value"]["choices"] == ["sports", "food"]
    assert prediction_errors(spec, result) == []


def test_labels_outside_the_config_are_refused():
    spec = parse_spec(SENTIMENT_CONFIG)
    with pytest.raises(LabelingError):
        result_regions(spec, ("neutral",))
    bad = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neutral"]}}]
    assert prediction_errors(spec, bad)
