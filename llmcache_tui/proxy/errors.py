"""Errors in OpenAI's JSON shape, so SDK clients raise the right exception class.

Client input quoted in a message goes through :func:`echo` (re-exported from
:mod:`llmcache_tui.echo`), which caps it; :func:`error_body` caps whole messages and
params too, as a net for any message that quotes input without it.
"""

from __future__ import annotations

from typing import Any

from llmcache_tui.echo import clip, echo

__all__ = ["ProxyError", "echo", "error_body"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    431: "invalid_request_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}

MESSAGE_LIMIT = 2000  # characters of a whole message (the configured model list fits)
PARAM_LIMIT = 200


class ProxyError(Exception):
    """An error answered to the client with ``status`` and an OpenAI-style body.

    ``headers`` are added to the response (e.g. ``accept-encoding`` on a 415).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or []

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": clip(message, MESSAGE_LIMIT),
            "type": _TYPES.get(status, "api_error"),
            "param": None if param is None else clip(param, PARAM_LIMIT),
            "code": code if code is not None else str(status),
        }
    }
