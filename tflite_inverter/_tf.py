"""A lazy handle on TensorFlow.

Op modules say ``from .._tf import tf`` and register their rebuilders at import time; TensorFlow
itself (5 s to import) is only loaded when a rebuilder first runs. That keeps ``inspect`` and the
coverage report, which read the registry, free of TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
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


def tensorflow_op_error(exc: BaseException) -> str | None:
    """One line describing the TensorFlow op failure behind ``exc``, or ``None`` if there is none.

    A kernel or shape function that rejects its inputs raises ``tf.errors.OpError``; while a graph is
    being traced TensorFlow re-raises it as ``ValueError`` (``ops._create_c_op``), keeping the
    ``OpError`` as the exception's context. Errors of our own code have no ``OpError`` in their chain,
    so they stay tracebacks (bugs), while a model TensorFlow cannot build or run gets a named error.
    """
    mod = sys.modules.get("tensorflow")
    if mod is None:
        return None
    op_error = mod.errors.OpError
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, op_error):
            text = str(exc) if isinstance(exc, ValueError) else e.message
            node = re.search(r"\{\{node ([^}]+)\}\}", text)
            text = re.sub(r" for '\{\{node [^}]*\}\}[^']*'", "", text)  # the node's full attribute dump
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln[0].isspace()
                     and not ln.startswith(("Graph execution error", "Detected at node", "<stack traces"))]
            line = " ".join((lines[-1] if lines else text).split())
            line = line if len(line) <= 300 else line[:300] + " ..."
            return f"{line} (node {node.group(1)})" if node and isinstance(exc, mod.errors.OpError) else line
        e = e.__cause__ or e.__context__
    return None
