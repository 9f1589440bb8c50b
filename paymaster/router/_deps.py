"""Optional dependencies of the learned routers and the evals: a missing one is a clear error naming the extra."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingExtraError

_HINT = "pip install 'paymaster[evals]'"


def require(module: str, feature: str) -> Any:
    """Import ``module`` or raise MissingExtraError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{module!r} is needed for {feature} but is not installed: {_HINT}") from exc


def require_numpy() -> Any:
    """numpy, for calibration and the learned scorer."""
    return require("numpy", "calibration and the learned router")
