"""What the `fewshot-prelabel` command prints instead of a traceback: one line naming the thing and the fix.

Each command raises its own LabelingError/SettingsError with a full message; this module turns the errors of
the layers below (a file that is missing or unreadable, Redis, Label Studio, the LLM server) into such a line
too, wherever in a command they surface. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os

from .labeling.errors import LabelingError
from .settings import SettingsError


def redacted(url: str) -> str:
    """A URL without the user:password part (Redis URLs carry passwords)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


def clean_message(exc: BaseException) -> str | None:
    """The one line for an error a user can fix, or None for a bug."""
    if isinstance(exc, (LabelingError, SettingsError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot open {str(exc.filename)!r}: {exc.strerror or exc} (check the path and its permissions)"
    from .local_studio import StudioError as LocalStudioError
    from .studio import StudioError

    if isinstance(exc, (StudioError, LocalStudioError)):
        return str(exc).splitlines()[0] if str(exc) else "Label Studio failed: check LABEL_STUDIO_URL"
    import redis

    if isinstance(exc, redis.exceptions.ConnectionError):
        url = redacted(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
        return (f"Redis is unreachable at {url} (REDIS_URL): start redis-server there (`make run` does) or set "
                "REDIS_URL to a running Redis")
    import openai

    if isinstance(exc, openai.APIConnectionError):
        url = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return (f"the LLM server is unreachable at {redacted(url)} (OPENAI_BASE_URL): start it or fix "
                "OPENAI_BASE_URL")
    if isinstance(exc, openai.AuthenticationError):
        return "the LLM server refused the API key (HTTP 401): check OPENAI_API_KEY"
    from .llm import LLMError

    if isinstance(exc, LLMError):
        return str(exc).splitlines()[0]
    return None

