"""What the `fewshot-prelabel` command prints instead of a traceback: one line naming the thing and the fix.

Each command raises its own LabelingError/SettingsError with a full message; this module turns the errors of
the layers below (a file that is missing or unreadable, Redis, Label Studio, the LLM server) into such a line
too, wherever in a command they surface. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from backend.labeling.errors import LabelingError
from backend.settings import Settings, SettingsError, redacted


def _configured() -> Settings | None:
    try:
        return Settings.from_env()
    except SettingsError:
        return None


def clean_message(exc: BaseException) -> str | None:
    """The one line for an error a user can fix, or None for a bug."""
    if isinstance(exc, (LabelingError, SettingsError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot open {str(exc.filename)!r}: {exc.strerror or exc} (check the path and its permissions)"
    from backend.studio.client import StudioError

    if isinstance(exc, StudioError):
        return str(exc).splitlines()[0] if str(exc) else "Label Studio failed: check LABEL_STUDIO_URL"
    import redis

    if isinstance(exc, redis.exceptions.ConnectionError):
        settings = _configured()
        url = redacted(settings.redis_url if settings else "REDIS_URL")
        return (
            f"Redis is unreachable at {url} (REDIS_URL): start redis-server there (`make run` does) or set "
            "REDIS_URL to a running Redis"
        )
    import openai

    if isinstance(exc, openai.APIConnectionError):
        settings = _configured()
        url = (settings.openai_base_url if settings else "") or "https://api.openai.com/v1"
        return f"the LLM server is unreachable at {redacted(url)} (OPENAI_BASE_URL): start it or fix OPENAI_BASE_URL"
    if isinstance(exc, openai.AuthenticationError):
        return "the LLM server refused the API key (HTTP 401): check OPENAI_API_KEY"
    from backend.model.errors import LLMError

    if isinstance(exc, LLMError):
        return str(exc).splitlines()[0]
    return None
