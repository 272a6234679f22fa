"""Settings: typed, validated, and secrets never shown."""

import pytest

from backend.settings import Settings, SettingsError, settings_table


def test_defaults_and_types():
    settings = Settings.from_env({"LLM_TIMEOUT": "2.5", "LABEL_CONCURRENCY": "3", "LLM_REQUEST_LOGPROBS": "no"})
    assert (settings.timeout, settings.concurrency, settings.request_logprobs) == (2.5, 3, False)
    assert settings.answer_mode == "json"


@pytest.mark.parametrize(
    "env, name",
    [
        ({"LLM_TIMEOUT": "soon"}, "LLM_TIMEOUT"),
        ({"LLM_ANSWER_MODE": "magic"}, "LLM_ANSWER_MODE"),
        ({"LABEL_CONCURRENCY": "0"}, "LABEL_CONCURRENCY"),
        ({"LLM_REQUEST_LOGPROBS": "maybe"}, "LLM_REQUEST_LOGPROBS"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_the_api_key_never_shows():
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-secret-123"})
    shown = [
        repr(settings),
        str(settings),
        f"{settings.openai_api_key}",
        str(settings.public()),
        "%s" % settings.openai_api_key,  # noqa: UP031 (the old formatting must hide the secret too)
    ]
    assert not any("sk-secret-123" in text for text in shown)
    assert settings.openai_api_key.reveal() == "sk-secret-123"
    assert settings.public()["OPENAI_API_KEY"] is True


def test_every_setting_is_documented():
    rows = settings_table()
    assert all(name and meaning for name, _default, meaning in rows)
    assert "OPENAI_API_KEY" in {name for name, _, _ in rows}


def test_the_readme_table_lists_every_variable():
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    missing = [name for name, _, _ in settings_table() if f"| `{name}` |" not in readme]
    assert not missing, f"README's environment table lacks {missing}"


def test_unset_secrets_are_still_secrets():
    settings = Settings.from_env({})
    assert settings.openai_api_key.reveal() == "" and settings.studio_api_key.reveal() == ""


@pytest.mark.parametrize(
    "env, missing",
    [({"BASIC_AUTH_USER": "admin"}, "BASIC_AUTH_PASS"), ({"BASIC_AUTH_PASS": "s3cret-pass"}, "BASIC_AUTH_USER")],
)
def test_half_of_basic_auth_is_refused_not_silently_off(env, missing):
    with pytest.raises(SettingsError, match=f"{missing} is empty") as info:
        Settings.from_env(env)
    assert "s3cret-pass" not in str(info.value)
