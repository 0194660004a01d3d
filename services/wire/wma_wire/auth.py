"""A bearer token on the door of both services, off unless a token is configured.

:func:`read_token` reads a token from the environment: the variable itself
(``WMA_GATEWAY_TOKEN``) or a file it names (``WMA_GATEWAY_TOKEN_FILE``, a mounted
Secret; one trailing newline is dropped). :class:`BearerAuth` is a pure ASGI
middleware: every HTTP request outside its open paths (the probes, ``/metrics``)
needs ``Authorization: Bearer <token>``, compared in constant time
(:func:`hmac.compare_digest`), before the body is read. A refusal is a 401
``{"error": ...}`` naming the problem (missing header, another scheme, wrong
token) with ``WWW-Authenticate: Bearer``; it never echoes what was sent, and the
token is never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from wma_wire.errors import HTTPError

__all__ = [
    "MISSING",
    "NOT_BEARER",
    "REASONS",
    "WRONG_TOKEN",
    "BearerAuth",
    "TokenError",
    "bearer_header",
    "read_token",
]

# RFC 6750's b64token: what fits in the header without quoting or escaping.
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_MAX_TOKEN = 4096

MISSING = "missing Authorization header: send 'Authorization: Bearer <token>'"
NOT_BEARER = "the Authorization header must use the Bearer scheme"
WRONG_TOKEN = "invalid bearer token"
_CHALLENGE = 'Bearer realm="wma"'
# what a refusal counts as (a metric label): no header, another scheme, a wrong token
REASONS = {MISSING: "missing", NOT_BEARER: "scheme", WRONG_TOKEN: "token"}


class TokenError(HTTPError):
    """A configured token that cannot be used (empty, unreadable file, bad characters).

    ``variable`` names the environment variable; nothing here holds the value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _checked(name: str, value: str) -> str:
    if not value:
        raise TokenError(name, "set but empty")
    if len(value) > _MAX_TOKEN or not _TOKEN.match(value):
        raise TokenError(
            name,
            f"must be 1-{_MAX_TOKEN} characters of A-Z a-z 0-9 - . _ ~ + / "
            "(then optional '=' padding)",
        )
    return value


def read_token(env: Mapping[str, str], name: str) -> str | None:
    """The token in ``env[name]``, or in the file ``env[name + '_FILE']`` names;
    ``None`` when neither is set (auth off). Setting both is refused."""
    file_var = f"{name}_FILE"
    if name in env and file_var in env:
        raise TokenError(name, f"set {name} or {file_var}, not both")
    if name in env:
        return _checked(name, env[name])
    if file_var in env:
        path = Path(env[file_var])
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
            raise TokenError(file_var, f"cannot read {path}: {reason}") from None
        return _checked(file_var, text.removesuffix("\n").removesuffix("\r"))
    return None


def bearer_header(token: str) -> dict[str, str]:
    """The request header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


def _problem(headers: list[tuple[bytes, bytes]], expected: bytes) -> str | None:
    """What is wrong with the request's credentials, or ``None`` when they are right."""
    values = [v for k, v in headers if k == b"authorization"]
    if not values:
        return MISSING
    if len(values) > 1:
        return "send one Authorization header"
    scheme, _, given = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return NOT_BEARER
    # compare_digest takes time independent of where the bytes differ
    if not hmac.compare_digest(given.strip(), expected):
        return WRONG_TOKEN
    return None


class BearerAuth:
    """Refuse HTTP requests without the right bearer token, except on ``open_paths``."""

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        open_paths: Collection[str],
        logger: logging.Logger,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self._expected = token.encode("ascii")
        self._open = frozenset(open_paths)
        self._log = logger
        self._on_refused = on_refused  # called with the reason (REASONS) of each 401

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        problem = _problem(scope["headers"], self._expected)
        if problem is None:
            await self.app(scope, receive, send)
            return
        self._log.info("%s %s -> 401: %s", scope["method"], scope["path"], problem)
        if self._on_refused is not None:
            self._on_refused(REASONS.get(problem, "header"))
        challenge = f'{_CHALLENGE}, error="invalid_token"' if problem == WRONG_TOKEN else _CHALLENGE
        response = JSONResponse(
            {"error": problem}, status_code=401, headers={"WWW-Authenticate": challenge}
        )
        await response(scope, receive, send)
