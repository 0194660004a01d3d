"""Sticky canary assignment: which participants the ensemble serves in canary mode.

A participant's bucket is derived from a salted SHA-256 of its id, never from
Python's ``hash()`` (randomised per process), so the assignment is the same
across requests, restarts and gateway replicas that share the salt. Raising
``canary_percent`` only ever adds participants to the canary: one whose bucket
is under 10 stays in at 20.
"""

from __future__ import annotations

import hashlib

_SPAN = float(2**64)


def canary_bucket(participant_id: str, salt: str) -> float:
    """The participant's position in ``[0, 100)``: the first 8 bytes of
    ``sha256(salt + "\\0" + id)`` read as a big-endian integer, scaled to percent."""
    digest = hashlib.sha256(f"{salt}\0{participant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SPAN * 100.0


def in_canary(participant_id: str, percent: float, salt: str) -> bool:
    """Whether the ensemble serves this participant when ``percent`` % are in the canary."""
    if percent <= 0.0:
        return False
    if percent >= 100.0:
        return True
    return canary_bucket(participant_id, salt) < percent
