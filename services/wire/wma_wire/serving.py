"""How both services are served: uvicorn with uvloop's event loop and the httptools parser.

Named explicitly rather than left to uvicorn's ``auto``, which silently falls back
to asyncio's loop and the pure-Python h11 parser when either is missing; both are
base dependencies, so a missing one is a broken install and fails at start.
Profiled in docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HTTP", "LOOP"]

LOOP: Final = "uvloop"
HTTP: Final = "httptools"
