"""LLMError: a model request that finally failed. Its own module so that the parts that only raise or catch it
(the local embedding model, the labeler) need not import the HTTP client."""

from __future__ import annotations


class LLMError(Exception):
    """A request that finally failed; `kind` is rate_limited, server_error, timeout, connection, auth or bad_request."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
