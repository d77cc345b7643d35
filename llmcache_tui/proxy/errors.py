"""Every error the proxy answers, in one shape: OpenAI's ``{"error": {...}}`` body.

``message`` says what went wrong; ``type`` is OpenAI's class of error, fixed by the HTTP
status; ``param`` names the request parameter at fault, or is null; ``code`` is the HTTP
status as a string, as LiteLLM's proxy sends it, so clients and dashboards written against
LiteLLM read the same value here. SDK clients pick their exception class from the status.

Client input quoted in a message goes through :func:`echo` (re-exported from
:mod:`llmcache_tui.echo`), which caps it; :func:`error_body` caps whole messages and
params too, as a net for any message that quotes input without it.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmcache_tui.echo import clip, echo

__all__ = ["ProxyError", "echo", "error_body", "error_type", "upstream_error_reply"]

# OpenAI's error types by status; any other 4xx is an invalid request, any 5xx a server error.
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

MESSAGE_LIMIT = 2000  # characters of a whole message (the configured model list fits)
PARAM_LIMIT = 200


class ProxyError(Exception):
    """An error answered to the client with ``status`` and the body of :func:`error_body`.

    ``headers`` are added to the response (e.g. ``accept-encoding`` on a 415).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or []

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param)


def error_type(status: int) -> str:
    """OpenAI's ``type`` for an error answered with ``status``."""
    found = _TYPES.get(status)
    if found is not None:
        return found
    return SERVER_ERROR if status >= 500 else INVALID_REQUEST


def error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """The one error body of the proxy (see the module docstring for its fields)."""
    return {
        "error": {
            "message": clip(message, MESSAGE_LIMIT),
            "type": error_type(status),
            "param": None if param is None else clip(param, PARAM_LIMIT),
            "code": str(status),
        }
    }


UPSTREAM_TEXT_LIMIT = 300  # characters of a non-JSON upstream error quoted in the message


def upstream_error_reply(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An upstream's error answer (status 400 or more) as the client gets it.

    A body already in OpenAI's shape goes on as it came, with the upstream's own ``code``
    (``rate_limit_exceeded``...), which says more than a status. Anything else (a gateway's
    HTML page, plain text, an empty body) is wrapped in :func:`error_body` with the
    upstream's status, so a client always reads the same shape.
    """
    if _openai_shaped(body):
        return body, headers
    text = body.decode("utf-8", "replace").strip()
    message = f"upstream answered HTTP {status}"
    message += f": {clip(text, UPSTREAM_TEXT_LIMIT)}" if text else " with an empty body"
    kept = [(name, value) for name, value in headers if name != b"content-type"]
    wrapped = orjson.dumps(error_body(status, message))
    return wrapped, [(b"content-type", b"application/json"), *kept]


def _openai_shaped(body: bytes) -> bool:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = document.get("error") if isinstance(document, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str)
