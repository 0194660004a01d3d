"""Reading a whole ``multipart/form-data`` body in memory, refusing any that is not complete.

Starlette's form parser spools large parts to temporary files; frames are
biometric data and must never touch the disk, so the body (already bounded in
size by the caller) is parsed here with ``python_multipart`` callbacks. Shared
by the legacy ``/check_frame_batch`` route and the gateway's ``/v1/analyze``.

``MultipartParser.finalize()`` does not check that the body reached its closing
boundary, so an empty, truncated or unterminated body would pass with whatever
parts it had (a frame cut short included); the ``on_end`` callback is what
tells a complete body apart, and without it the body is refused.

The two rules both services share live here, once: a body that is not
``multipart/form-data`` is a 415 naming its content type, and a form may hold
at most ``max_files + EXTRA_FORM_PARTS`` parts (the frames, ``participant_id``,
``meeting_id`` and a few fields that are ignored) before it is a 413.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from wma_wire.errors import BadRequestError, LimitExceededError, UnsupportedFormatError

__all__ = ["EXTRA_FORM_PARTS", "MALFORMED", "FormPart", "read_form_parts"]

MALFORMED = "malformed multipart body"
EXTRA_FORM_PARTS = 16  # besides the frames: participant_id, meeting_id, ignored fields


@dataclass
class FormPart:
    """One part of the form: its headers (names lower-cased) and its bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)

    _disposition: tuple[str | None, bool] | None = field(default=None, init=False, repr=False)

    def disposition(self) -> tuple[str | None, bool]:
        """The part's form name, and whether it is a file (has a filename); parsed
        once, when first asked (the part's headers are complete by then)."""
        if self._disposition is None:
            _, params = parse_options_header(self.headers.get("content-disposition", ""))
            name = params.get(b"name")
            self._disposition = (
                (name.decode("utf-8", "replace") if name else None),
                b"filename" in params,
            )
        return self._disposition

    @property
    def filename(self) -> str:
        """The part's filename, or ``""`` where it has none."""
        _, params = parse_options_header(self.headers.get("content-disposition", ""))
        return params.get(b"filename", b"").decode("utf-8", "replace")

    @property
    def content_type(self) -> str:
        """The declared media type, lower-cased, without parameters (``""`` if none)."""
        mime = parse_options_header(self.headers.get("content-type", ""))[0]
        return mime.decode("latin-1").lower()  # header bytes need not be UTF-8


def read_form_parts(body: bytes, content_type: str, *, max_files: int) -> list[FormPart]:
    """Every part of a complete ``multipart/form-data`` body, in order.

    Raises :class:`UnsupportedFormatError` (415) for another content type,
    :class:`BadRequestError` (400) for a missing boundary parameter or a body that
    is malformed, empty or cut off, and :class:`LimitExceededError` (413) past
    ``max_files + EXTRA_FORM_PARTS`` parts.
    """
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        got = repr(mime.decode("latin-1")) if mime else "no content type"
        raise UnsupportedFormatError(f"the request must be multipart/form-data, got {got}")
    max_parts = max_files + EXTRA_FORM_PARTS
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequestError(f"{MALFORMED}: the content type has no boundary parameter")
    parts: list[FormPart] = []
    header = [bytearray(), bytearray()]
    open_part: list[bool] = [False]
    ended: list[bool] = []

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise LimitExceededError(f"too many form parts (max_files={max_files})")
        parts.append(FormPart())
        open_part[0] = True

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header[0].decode("latin-1").lower()] = header[1].decode("latin-1")
        header[0].clear()
        header[1].clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_part_end() -> None:
        open_part[0] = False

    try:  # the constructor refuses a boundary over 256 bytes (FormParserError)
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": lambda: ended.append(True),
            },
        )
        parser.write(body)
        parser.finalize()
    except ValueError as exc:  # python-multipart's parse errors (FormParserError) are these
        raise BadRequestError(f"{MALFORMED}: {exc}") from None
    if not ended:
        if not body:
            problem = "the body is empty"
        elif open_part[0]:
            problem = f"the body ends inside part {len(parts) - 1}, before its closing boundary"
        else:
            problem = "the body does not end with its closing boundary"
        raise BadRequestError(f"{MALFORMED}: {problem}")
    return parts
