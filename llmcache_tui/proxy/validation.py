"""What a request body must be before it is forwarded or stored, checked as OpenAI checks it.

Two kinds of check: the body's media type and coding (a body the proxy would misread is a
415), and the shape of the prompt parameter of each route (a prompt the provider would
refuse is a 400 naming the parameter, never an answer stored under a key of garbage).
The proxy runs the shape checks once per distinct body: byte-identical repeats reuse the
parsed request.
"""

from __future__ import annotations

import re
from typing import Any

from llmcache_tui.proxy.asgi import Scope
from llmcache_tui.proxy.errors import ProxyError, echo

# Exact header values seen in practice, so the usual request needs no parsing. No content
# type at all (requests' ``data=``, raw sockets) is read as JSON too, as LiteLLM does.
_PLAIN_JSON = frozenset(
    {
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json;charset=utf-8",
        b"application/json; charset=UTF-8",
        b"application/json;charset=UTF-8",
    }
)
FORM_URLENCODED = "application/x-www-form-urlencoded"
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii"})
_IDENTITY_ONLY = [(b"accept-encoding", b"identity")]

# What may not appear in a header value (RFC 9110 5.5), so not in a form part's headers.
_HEADER_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def body_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The request's ``content-type`` and ``content-encoding``, in one pass over its headers."""
    content_type = content_encoding = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            if content_type is None:
                content_type = bytes(value)
        elif name == b"content-encoding":
            content_encoding = bytes(value) if content_encoding is None else b"multiple"
    return content_type, content_encoding


def check_encoding(content_encoding: bytes | None) -> None:
    """Refuse a coded body (gzip, ...): it would be read as if it were plain."""
    if content_encoding is None or content_encoding.strip().lower() == b"identity":
        return
    raise ProxyError(
        415,
        f"unsupported Content-Encoding {echo(content_encoding.decode('latin-1'))}:"
        " send the request body uncompressed",
        headers=list(_IDENTITY_ONLY),
    )


def json_media(content_type: bytes | None) -> bool:
    """Check that a body with this content type may be read as JSON.

    Returns True for ``application/x-www-form-urlencoded``, which curl's ``-d`` sends by
    default: such a body is read as JSON only if it parses as JSON (else a 415); any other
    type that is not JSON is a 415 at once.
    """
    if content_type is None or content_type in _PLAIN_JSON:
        return False
    text = content_type.decode("latin-1")
    kind, _, rest = text.partition(";")
    kind = kind.strip().lower()
    if kind == FORM_URLENCODED:
        return True
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        charset = _charset(rest)
        if charset is None or charset in _UTF8:
            return False
        raise unsupported_media(f"charset {echo(charset)}", "JSON in UTF-8")
    raise unsupported_media(f"Content-Type {echo(text)}", "a JSON body")


def unsupported_media(what: str, expected: str) -> ProxyError:
    return ProxyError(
        415, f"unsupported {what}: this route reads {expected}; send Content-Type: application/json"
    )


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def check_field_name(name: str) -> None:
    """Refuse a form field name that is not printable ASCII (OpenAI's all are).

    Names are written again into the upload forwarded upstream, whose writer (aiohttp)
    cannot send any other name: a control character is forbidden in a header, and a
    non-ASCII name fails its own check of the part's headers.
    """
    if not (name.isascii() and name.isprintable()):
        raise _invalid(f"form field name {echo(name)} must be printable ASCII", name)


def check_part_type(content_type: str) -> None:
    """Refuse an uploaded file's content type that holds a control character.

    It is forwarded as a header of the upload, where control characters are forbidden
    (and CR or LF would inject a header); the file name is percent-quoted, so any will do.
    """
    if _HEADER_CONTROLS.search(content_type) is not None:
        raise _invalid(
            f"file content type {echo(content_type)} contains a control character", "file"
        )


def check_prompt(route: str, body: dict[str, Any]) -> None:
    """Raise a 400 naming the parameter if the route's prompt parameter is malformed."""
    if route == "chat":
        _messages(body.get("messages"))
    elif route == "text_completion":
        _tokens_or_text("prompt", body.get("prompt"), empty_text=True)
    elif route == "embedding":
        _tokens_or_text("input", body.get("input"), empty_text=False)


def _messages(messages: Any) -> None:
    if messages is None:
        raise _invalid("missing required parameter 'messages'", "messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid(
            f"'messages' must be a non-empty array of message objects, got {_name(messages)}",
            "messages",
        )
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            got = _name(message)
            raise _invalid(f"'{param}' must be an object with a 'role', got {got}", param)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            got = "nothing" if role is None else _name(role)
            raise _invalid(
                f"'{param}.role' must be a string such as 'user', got {got}", f"{param}.role"
            )
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
            raise _invalid(
                f"'{param}.content' must be a string, an array of content part objects or"
                f" null, got {_name(content)}",
                f"{param}.content",
            )


def _tokens_or_text(param: str, value: Any, *, empty_text: bool) -> None:
    """A string, or a non-empty array of strings, of token ids, or of token id arrays."""
    if value is None:
        raise _invalid(f"missing required parameter '{param}'", param)
    if isinstance(value, str):
        if empty_text or value:
            return
        raise _invalid(f"'{param}' must not be an empty string", param)
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, str):
            if all(isinstance(item, str) and (empty_text or item) for item in value):
                return
        elif isinstance(first, list):
            if all(isinstance(item, list) and item and _token_ids(item) for item in value):
                return
        elif _token_ids(value):
            return
    raise _invalid(
        f"'{param}' must be a string, an array of strings, an array of token ids (integers)"
        f" or an array of token id arrays, got {_name(value)}",
        param,
    )


def _token_ids(items: list[Any]) -> bool:
    # bool is an int subclass, but true is not a token.
    return all(type(item) is int for item in items)


def _name(value: Any) -> str:
    """The JSON type of ``value``; for an array, also the types it holds."""
    name = _JSON_NAMES.get(type(value), type(value).__name__)
    if not isinstance(value, list):
        return name
    if not value:
        return "an empty array"
    held = list(dict.fromkeys(_JSON_NAMES.get(type(item), "?") for item in value[:100]))
    return "an array holding " + ", ".join(held[:4])


def _invalid(message: str, param: str) -> ProxyError:
    return ProxyError(400, message, param=param)
