"""The rebuilder registry: op key -> rebuild function.

A rebuilder is a small function ``fn(ctx) -> list of output values`` registered with
``@register("CONV_2D", ...)``. It receives an :class:`~tflite_inverter.ops.context.OpContext` (the
operator with its decoded options, its input values, its constants) and returns one value per
operator output. It knows nothing about files, CLIs or other ops.

An optional ``check(op, subgraph) -> list[str]`` names option values the rebuilder cannot honour; the
rebuilder runs every check before building anything, so all problems are reported at once.

Keys are builtin names (``"CONV_2D"``) or ``"CUSTOM:<custom_code>"``. A key ending in ``*`` matches
by prefix (``"CUSTOM:Flex*"`` handles every Flex op).

Importing this module and the family modules does not import TensorFlow (see :mod:`.._tf`), so the
coverage report can ask the registry what is supported cheaply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..model.ir import Operator, Subgraph
from .context import OpContext

RebuildFn = Callable[[OpContext], Sequence[Any]]
CheckFn = Callable[[Operator, Subgraph], list[str]]
#: A check that needs the whole model (e.g. the body subgraph an op names).
ModelCheckFn = Callable[[Operator, Subgraph, Any], list[str]]


def constant_input_check(index: int, problem: str) -> CheckFn:
    """A check naming ``problem`` when the operator's input ``index`` is absent or not a constant
    (an input the rebuild needs at build time: an FFT length, dilation factors)."""

    def check(op: Operator, sg: Subgraph) -> list[str]:
        t = sg.input_of(op, index)
        return [] if t is not None and t.is_constant else [problem]

    return check


#: Modules holding rebuilders, one per op family. A new family is one line here.
FAMILIES: tuple[str, ...] = (
    "elementwise",
    "conv",
    "pool",
    "nn",
    "shape",
    "reduce",
    "resize",
    "quant",
    "control_flow",
    "recurrent",
    "misc",
    "sparse",
    "legacy",
    "stablehlo",
    "custom.mediapipe",
    "custom.detection",
    "custom.flex",
    "custom.signal",
    "custom.posenet",
)

#: Ops no rebuilder can ever reproduce, with the reason given to users.
REFUSED: dict[str, str] = {
    "CUSTOM:edgetpu-custom-op": "a graph compiled for the Coral Edge TPU into an opaque binary blob; "
    "rebuild from the model before edgetpu_compiler",
    "CUSTOM:ethos-u": "a graph compiled by Vela for the Arm Ethos-U NPU into an opaque command stream; "
    "rebuild from the model before Vela",
    "CUSTOM:NeutronGraph": "a graph compiled for the NXP eIQ Neutron NPU into an opaque binary blob; "
    "rebuild from the model before the Neutron converter",
    "CUSTOM:vsi-npu": "a precompiled VeriSilicon network binary (NBG)",
    "CUSTOM:fake-op-double": "a test placeholder op with no defined semantics",
    "CUSTOM:FakeOp": "a test placeholder op with no defined semantics",
    "CUSTOM:FlexDouble": "a test placeholder Flex op with no TensorFlow kernel",
    "DELEGATE": "a node that stands for a delegate's compiled partition, not a computation; rebuild from the "
    "model before it was delegated",
}


#: Ops that could be rebuilt but are not yet, with what users should know (shown instead of a bare
#: "no rebuilder"). An entry leaves this table when its rebuilder lands.
NOT_YET: dict[str, str] = {
    "CUSTOM:TFSentencepieceTokenizeOp": "a SentencePiece tokenizer with an embedded model; not rebuilt yet",
    "CUSTOM:RaggedTensorToTensor": "a TF Text ragged-tensor op; not rebuilt yet",
    "REDUCE_WINDOW": "the deprecated REDUCE_WINDOW builtin (window given as input tensors); not rebuilt yet "
    "(STABLEHLO_REDUCE_WINDOW is)",
}


@dataclass(frozen=True)
class OpSpec:
    key: str
    fn: RebuildFn
    family: str
    check: CheckFn | None = None
    model_check: ModelCheckFn | None = None


_REGISTRY: dict[str, OpSpec] = {}
_loaded = False


def register(*keys: str, check: CheckFn | None = None, model_check: ModelCheckFn | None = None
             ) -> Callable[[RebuildFn], RebuildFn]:
    """Register ``fn`` as the rebuilder of every op key in ``keys``.

    ``check(op, subgraph)`` and ``model_check(op, subgraph, model)`` return the problems that make
    one op unbuildable (options, dtypes; ``model_check`` for what lives in other subgraphs), so
    every problem of a model is reported at once, before anything is built."""

    def deco(fn: RebuildFn) -> RebuildFn:
        family = fn.__module__.rsplit(".ops.", 1)[-1]
        for key in keys:
            if key in _REGISTRY and _REGISTRY[key].fn is not fn:
                raise RuntimeError(f"op {key} registered twice ({_REGISTRY[key].family} and {family})")
            _REGISTRY[key] = OpSpec(key, fn, family, check, model_check)
        return fn

    return deco


def not_rebuilt(key: str, why: str) -> None:
    """Record why a family deliberately has no rebuilder for ``key`` (shown instead of "no rebuilder").

    Lets a family module keep the reasons for its gaps next to its rebuilders, e.g. an op the TFLite
    runtime has no kernel for, so nothing could verify a rebuild.
    """
    if key in _REGISTRY:
        raise RuntimeError(f"op {key} is registered and cannot also be listed as not rebuilt")
    NOT_YET[key] = why


def load_all() -> None:
    """Import every family module (cheap: none of them imports TensorFlow at import time)."""
    global _loaded
    if _loaded:
        return
    for fam in FAMILIES:  # a family that fails to import is an error, never silently fewer ops
        importlib.import_module(f"{__package__}.{fam}")
    _loaded = True


def registered() -> dict[str, OpSpec]:
    """Every registered op key and its spec."""
    load_all()
    return dict(_REGISTRY)


def find(key: str) -> OpSpec | None:
    """The spec for an op key (exact match first, then the longest prefix pattern)."""
    load_all()
    if key in _REGISTRY:
        return _REGISTRY[key]
    best: OpSpec | None = None
    for k, spec in _REGISTRY.items():
        if k.endswith("*") and key.startswith(k[:-1]) and (best is None or len(k) > len(best.key)):
            best = spec
    return best


def support(op: Operator, subgraph: Subgraph, model: Any = None) -> tuple[bool, str | None]:
    """Whether ``op`` can be rebuilt, and if not, why (one line per problem). ``model`` (the
    :class:`~tflite_inverter.model.ir.Model`) enables the checks that look at other subgraphs."""
    load_all()
    if op.key in REFUSED:
        return False, REFUSED[op.key]
    if op.options_type and op.options_type.startswith("UNKNOWN_OPTIONS"):
        return False, f"options type {op.options_type} is newer than the bundled schema"
    spec = find(op.key)
    if spec is None:
        for key, why in NOT_YET.items():
            if op.key == key or (key.endswith("*") and op.key.startswith(key[:-1])):
                return False, why
        what = "custom op" if op.name == "CUSTOM" else "builtin op"
        return False, f"no rebuilder for {what} {op.key}"
    problems = spec.check(op, subgraph) if spec.check is not None else []
    if model is not None and spec.model_check is not None:
        problems = problems + spec.model_check(op, subgraph, model)
    if problems:
        return False, "; ".join(problems)
    return True, None
