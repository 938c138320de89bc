"""A lazy handle on TensorFlow.

Op modules say ``from .._tf import tf`` and register their rebuilders at import time; TensorFlow
itself (5 s to import) is only loaded when a rebuilder first runs. That keeps ``inspect`` and the
coverage report, which read the registry, free of TensorFlow.
"""

from __future__ import annotations

import importlib
import os
from typing import Any


class _LazyModule:
    def __init__(self, name: str):
        self._name = name
        self._mod: Any = None

    def _load(self) -> Any:
        if self._mod is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            self._mod = importlib.import_module(self._name)
        return self._mod

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)


tf: Any = _LazyModule("tensorflow")


def error_cause(exc: BaseException, limit: int = 300) -> str:
    """A TensorFlow error in one line: its type and cause, without the "Graph execution error:" head
    and the Python stack it quotes."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln[0].isspace()
             and not ln.startswith(("Graph execution error", "Detected at node", "<stack traces"))]
    text = " ".join((lines[-1] if lines else str(exc)).split())
    return f"{type(exc).__name__}: " + (text if len(text) <= limit else text[:limit] + " ...")
