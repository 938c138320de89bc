"""NPU placement targets for ``inspect --target``.

A target predicts, per operator instance, whether an NPU delegate takes the op or leaves it on the
CPU, and why. The rules are data (a JSON file next to the target's module); the module holds the
engine and the few op-specific predicates the JSON refers to by name.

Adding a target is one line in :data:`TARGETS` plus its module with a ``load()`` function returning an
object with ``name``, ``describe() -> dict`` and ``predict(model) -> dict``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import UsageError

#: target name -> module (relative to this package) providing ``load()``.
TARGETS: dict[str, str] = {
    "imx8mp": "imx8mp",
}


def available() -> tuple[str, ...]:
    return tuple(sorted(TARGETS))


def get_target(name: str) -> Any:
    """The loaded target ``name`` (its rules parsed and validated)."""
    if name not in TARGETS:
        raise UsageError(f"unknown target {name!r}; known targets: {', '.join(available())}")
    module = importlib.import_module(f"{__name__}.{TARGETS[name]}")
    return module.load()
