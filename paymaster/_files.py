"""Reading the user's files: TOML configs and Python modules named by path or import name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ConfigurationError


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigurationError naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{what} {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{what} {p} is not valid TOML: {exc}") from None


def load_module(where: str | Path, *, prefix: str = "paymaster_user") -> ModuleType:
    """Import a module from a ``.py`` file path, or by its import name (raises ImportError or FileNotFoundError)."""
    text = str(where)
    if isinstance(where, Path) or text.endswith(".py") or "/" in text:
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        spec = importlib.util.spec_from_file_location(f"{prefix}_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(text)
