"""Parse a ``multipart/form-data`` body (audio transcription uploads) held in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header


class MultipartError(ValueError):
    """The body is not the multipart form its content type claims."""


@dataclass(slots=True)
class Part:
    """One form part: a plain field (``filename`` None) or an uploaded file."""

    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)


def parse_multipart(content_type: bytes, body: bytes) -> list[Part]:
    """Split a multipart body into its parts; a body cut off before its closing boundary
    is malformed (its last part may be cut short too)."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise MultipartError("expected a multipart/form-data body with a boundary")
    parts: list[Part] = []
    ended = False
    header_name = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        parts.append(Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        name = bytes(header_name).lower()
        value = bytes(header_value)
        if name == b"content-disposition":
            _, params = parse_options_header(value)
            parts[-1].name = params.get(b"name", b"").decode("utf-8", "replace")
            filename = params.get(b"filename")
            parts[-1].filename = None if filename is None else filename.decode("utf-8", "replace")
        elif name == b"content-type":
            parts[-1].content_type = value.decode("latin-1")
        header_name.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.extend(data[start:end])

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(f"malformed multipart body: {exc}") from exc
    if not ended:
        # The parser accepts a body that stops anywhere; only the closing boundary shows
        # that the upload arrived whole.
        raise MultipartError("malformed multipart body: it ends before its closing boundary")
    return parts
