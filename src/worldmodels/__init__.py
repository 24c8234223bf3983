"""World Models (Ha & Schmidhuber, 2018): V (ConvVAE), M (MDN-RNN) and C (linear, CMA-ES).

The public API (`worldmodels.api`), loaded on first use so that `import worldmodels` stays light:

    import worldmodels as wm
    agent = wm.load("doom")        # WorldModel: .vision, .memory, .controller, .policy(), .dream()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from worldmodels.api import (
        Controller,
        Memory,
        MemoryState,
        Policy,
        Prediction,
        Vision,
        WorldModel,
        load,
    )

__all__ = ["Controller", "Memory", "MemoryState", "Policy", "Prediction", "Vision", "WorldModel",
           "load", "__version__"]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from worldmodels import api

        return getattr(api, name)
    raise AttributeError(f"module 'worldmodels' has no attribute {name!r}")
