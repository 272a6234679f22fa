"""Cost estimates: a per-model price table, never a made-up number."""

import pytest

from backend.costs import estimate_cost, parse_prices, price_for
from backend.settings import Settings, SettingsError


def test_dated_snapshots_share_their_base_price():
    table = parse_prices("")
    assert price_for("gpt-4o-mini-2024-07-18", table) == price_for("gpt-4o-mini", table)
    assert price_for("gpt-4o-2024-08-06", table) == (2.50, 10.00)
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000, table) == pytest.approx(0.75)


def test_unknown_models_have_no_cost_rather_than_a_guess():
    assert estimate_cost("llama3:8b", 1000, 10, parse_prices("")) is None


def test_the_table_can_be_overridden_and_extended_from_the_environment():
    settings = Settings.from_env({"LLM_PRICES": '{"llama3:8b": [0.05, 0.1], "gpt-4o-mini": [1, 2]}'})
    assert estimate_cost("llama3:8b", 2_000_000, 1_000_000, settings.price_table) == pytest.approx(0.2)
    assert price_for("gpt-4o-mini", settings.price_table) == (1.0, 2.0)


@pytest.mark.parametrize("raw", ["not json", '{"m": 3}', '["m"]', '{"m": ["a", "b"]}'])
def test_a_bad_price_table_names_the_variable(raw):
    with pytest.raises(SettingsError, match="LLM_PRICES"):
        Settings.from_env({"LLM_PRICES": raw})
