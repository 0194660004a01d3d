"""Provenance stamps of a bundle: when it was made and by which tool version.

``created`` is ``--created``, else ``SOURCE_DATE_EPOCH`` (reproducible builds),
else now, in UTC. ``SOURCE_DATE_EPOCH`` is checked before any command runs:
a malformed value would otherwise crash deep inside numpy's import of f2py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import metadata

from wma_calibrators.errors import CalibrateError

# datetime cannot represent year 10000 and later.
_EPOCH_LIMIT = 253_402_300_800


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` as whole seconds, None when unset or empty."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) >= _EPOCH_LIMIT:
        raise CalibrateError(
            f"SOURCE_DATE_EPOCH must be whole seconds since 1970 (0..{_EPOCH_LIMIT - 1}), "
            f"got {raw!r}"
        )
    return int(raw)


def created_timestamp(created: str | None = None) -> str:
    """``created`` if given, else ``SOURCE_DATE_EPOCH``, else now (UTC, ISO 8601)."""
    if created:
        return created
    epoch = source_date_epoch()
    when = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def tool_version() -> str:
    try:
        return "wma-ensemble " + metadata.version("wma-ensemble")
    except metadata.PackageNotFoundError:
        return "wma-ensemble (not installed)"
