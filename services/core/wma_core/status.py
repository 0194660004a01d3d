"""The statuses a member call (and the legacy call) ends with: one enum, its wire values.

The values are what the gateway writes into response bodies, comparison records,
span attributes and metric labels, so they never change; :class:`MemberStatus` is a
``StrEnum`` and compares equal to those strings (the rollout report reads records
back as plain JSON).
"""

from __future__ import annotations

from enum import StrEnum


class MemberStatus(StrEnum):
    OK = "ok"
    NO_FACES = "no_faces"
    TIMEOUT = "timeout"
    ERROR = "error"
    CIRCUIT_OPEN = "circuit_open"

    @property
    def failed(self) -> bool:
        """No answer: the call timed out, failed or was refused by the breaker."""
        return self in FAILED_STATUSES

    @property
    def answered(self) -> bool:
        """An answer, possibly with no scored frame."""
        return not self.failed


FAILED_STATUSES = frozenset({MemberStatus.TIMEOUT, MemberStatus.ERROR, MemberStatus.CIRCUIT_OPEN})
