"""The registration of the local-stack commands: ``wma up``, ``wma analyze``, ``wma demo``.

``wma up`` lives in :mod:`wma_local.cli_up`, ``wma analyze`` and ``wma demo`` in
:mod:`wma_local.cli_analyze`. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    from wma_local.cli_analyze import register_analyze
    from wma_local.cli_up import register_up

    register_up(subparsers)
    register_analyze(subparsers)
