"""wma model server: one Effort (or mock) detector behind the legacy API and OIP v2.

Public API: :func:`create_app`, :class:`ModelServerSettings`; the wire codec and the
frame limits it shares with the gateway are :mod:`wma_wire`'s. Importing this
package does no work and never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ModelServerSettings", "__version__", "create_app"]

if TYPE_CHECKING:
    from wma_model_server.app import create_app
    from wma_model_server.settings import ModelServerSettings


def __getattr__(name: str) -> Any:
    # Lazy so that `import wma_wire.protocol` (the gateway) stays light.
    if name == "create_app":
        from wma_model_server.app import create_app

        return create_app
    if name == "ModelServerSettings":
        from wma_model_server.settings import ModelServerSettings

        return ModelServerSettings
    raise AttributeError(name)
