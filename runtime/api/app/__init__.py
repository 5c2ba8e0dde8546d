"""The runtime's multi-tenant chat API (``kubebots serve``), built on the guide's integration.

:func:`create_app` wires the config store, the :class:`BotManager`, the store sync and the rate
limiter into a FastAPI app; :class:`RuntimeSettings` is everything it can be told.
"""

from .create import create_app
from .settings import RuntimeSettings

__all__ = ["RuntimeSettings", "create_app"]
