"""The gateway's tokens: the one its callers send, and the ones it sends its members.

``WMA_GATEWAY_TOKEN`` (or ``WMA_GATEWAY_TOKEN_FILE``) turns the door on: every
route but :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>``
(:class:`wma_wire.auth.BearerAuth`). The probes stay open for the kubelet and
``/metrics`` for Prometheus: it holds counts and latencies, no frames, ids or tokens.

Members: the gateway sends ``WMA_MS_TOKEN`` (the token the model servers check, one
for all) to every member and to the rollout's legacy model; ``WMA_MS_TOKEN_<ID>``
(the model id upper-cased, other characters as ``_``) overrides it for one member
and ``WMA_LEGACY_TOKEN`` for the legacy model; each has a ``_FILE`` form.
:class:`MemberTokens` is the shared client's ``httpx.Auth``: it picks a request's
token by the member whose replica's URL the request's URL starts with, so every
call to a member (ensemble, shadow, canary, legacy, readiness probes; every replica,
static or discovered) carries it, and no call elsewhere does. Tokens are read once,
when the app is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping

import httpx
from wma_wire.auth import TokenError, read_token

from wma_fusion.errors import ConfigError
from wma_fusion.state import RuntimeState

__all__ = [
    "GATEWAY_TOKEN_ENV",
    "LEGACY_TOKEN_ENV",
    "MEMBER_TOKEN_ENV",
    "OPEN_PATHS",
    "MemberTokens",
    "gateway_token",
    "member_token_env",
]

GATEWAY_TOKEN_ENV = "WMA_GATEWAY_TOKEN"
MEMBER_TOKEN_ENV = "WMA_MS_TOKEN"
LEGACY_TOKEN_ENV = "WMA_LEGACY_TOKEN"
OPEN_PATHS = ("/livez", "/readyz", "/metrics")


def _read(env: Mapping[str, str], name: str) -> str | None:
    try:
        return read_token(env, name)
    except TokenError as exc:  # the gateway refuses to start, naming the variable
        raise ConfigError(exc.variable, exc.problem) from None


def gateway_token(env: Mapping[str, str]) -> str | None:
    """The token callers must send, or ``None`` (the door is open)."""
    return _read(env, GATEWAY_TOKEN_ENV)


def member_token_env(model_id: str) -> str:
    """The variable that holds one member's token: ``WMA_MS_TOKEN_<ID>``."""
    return f"{MEMBER_TOKEN_ENV}_{re.sub(r'[^A-Z0-9]', '_', model_id.upper())}"


def _endpoints(state: RuntimeState) -> Iterator[tuple[str, str]]:
    """(base URL, token variable) of every member replica and of the legacy model."""
    for member in state.members:  # the replicas known now (discovered ones included)
        for replica in member.replicas.replicas:
            yield replica.url, member_token_env(member.id)
    legacy = state.config.rollout.legacy
    if legacy is not None:
        yield legacy.base_url, LEGACY_TOKEN_ENV


class MemberTokens(httpx.Auth):
    """Adds each member's bearer token to the requests the gateway sends it."""

    def __init__(self, current: Callable[[], RuntimeState], env: Mapping[str, str]) -> None:
        self._current = current
        self._env = dict(env)  # a snapshot: tokens are read when the app is built
        self._shared = _read(self._env, MEMBER_TOKEN_ENV)
        self._tokens: dict[str, str | None] = {}
        self.check(current())

    def check(self, state: RuntimeState) -> None:
        """Read (and so refuse, naming the variable) the tokens of ``state``'s members."""
        for _, var in _endpoints(state):
            self._token(var)

    def _token(self, var: str) -> str | None:
        if var not in self._tokens:
            own = _read(self._env, var)
            self._tokens[var] = own if own is not None else self._shared
        return self._tokens[var]

    def _token_for(self, url: str) -> str | None:
        best: tuple[int, str | None] = (-1, None)
        for base, var in _endpoints(self._current()):
            if (url == base or url.startswith(base + "/")) and len(base) > best[0]:
                try:
                    best = (len(base), self._token(var))
                except ConfigError:  # a member added by a reload, its token file unreadable
                    self._tokens[var] = None  # sent without: the member answers 401
                    best = (len(base), None)
        return best[1]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token_for(str(request.url))
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request
