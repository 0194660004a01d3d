"""The model-id rule, one for both services.

A model id names a member in the gateway config, in the model server's settings
and in the OIP path ``/v2/models/{id}/infer``, so the gateway and the model server
accept exactly the same ids: a letter or digit, then letters, digits, ``.``, ``_``
or ``-``, at most 63 characters (a DNS label's length). The Helm chart is
stricter still (the id is part of Service names: lowercase DNS label, at most 22).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
"""A ``str`` field that holds a model id (pydantic refuses any other string)."""
