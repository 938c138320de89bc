"""``--input-shape`` / ``input_shapes=``: the concrete shape to use for an input with dynamic dims.

A TFLite input's ``shape_signature`` marks a dynamic dimension with -1 (a SavedModel's TensorSpec
with None). The model keeps those dims dynamic (the SavedModel written by ``convert`` too); this
only says which shape verification, calibration (``--calib random``, image folders) and evaluation
feed. Without it a dynamic dim is fed as 1, which a model may reject (e.g. one that cuts audio into
frames of 160 samples).

Forms (one parser for both commands and the Python API):

- CLI, repeatable: ``--input-shape NAME=D1xD2x...``, or ``--input-shape D1xD2x...`` for a model with
  one input (per signature); ``NAME`` is the input's TFLite name (signature input or tensor name)
  or SavedModel signature input name, like the keys of ``--inputs``; ``SIGNATURE/NAME`` picks the
  input of one signature, a bare ``NAME`` every signature's input of that name. A scalar input is
  ``NAME=`` (rank 0).
- Python: ``{"name": (1, 16000)}``, a plain tuple ``(1, 16000)`` for a single-input model, or the
  CLI strings.

A given shape must have the input's rank, agree with every static dim and have positive dims; an
unknown NAME is a :class:`~tflite_inverter.errors.UsageError` that lists the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import UsageError

FLAG = "--input-shape"
#: What the parsed form maps: input name (None: the single input) -> shape.
Shapes = dict[str | None, tuple[int, ...]]
InputShapesArg = Mapping[str | None, Sequence[int] | str] | Sequence[int] | Sequence[str] | str | None


@dataclass(frozen=True)
class InputRef:
    """One model input as seen by the shape resolver."""

    signature: str | None  # the signature key (None: a model without SignatureDefs)
    names: tuple[str, ...]  # every name the input answers to; the first is the one shown
    shape: tuple[int | None, ...]  # None: dynamic dimension

    def describe(self, scoped: bool = False) -> str:
        """``'name' [1, ?]`` (``scoped``: ``'signature/name' [1, ?]``)."""
        name = f"{self.signature}/{self.names[0]}" if scoped and self.signature is not None else self.names[0]
        return f"{name!r} [{', '.join('?' if d is None else str(d) for d in self.shape)}]"

    @property
    def dynamic_dims(self) -> list[int]:
        return [k for k, d in enumerate(self.shape) if d is None]


def dims_of(shape: Sequence[int | None]) -> tuple[int | None, ...]:
    """A TFLite ``shape_signature`` (-1) or TensorSpec shape (None) with dynamic dims as None."""
    return tuple(None if d is None or d < 0 else int(d) for d in shape)


def _parse_dims(text: str, flag_value: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        dims = tuple(int(d) for d in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise UsageError(f"{FLAG} {flag_value!r}: expected NAME=D1xD2x... (e.g. audio=1x16000) or D1xD2x... for a "
                         "single-input model; dims are positive integers") from None
    return dims


def parse_input_shapes(value: InputShapesArg) -> Shapes:
    """Every accepted form (see the module docstring) -> ``{name or None: shape}``; format errors are
    :class:`UsageError` (names are checked against the model by :func:`resolve_input_shapes`)."""
    if value is None:
        return {}
    items: list[tuple[str | None, Sequence[int] | str, str]] = []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        items = [(k, v, f"{k}={v}") for k, v in value.items()]
    elif all(isinstance(v, str) for v in value):
        for text in value:
            name, sep, dims = str(text).rpartition("=")
            items.append((name.strip() if sep else None, dims, str(text)))
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        items = [(None, tuple(value), str(tuple(value)))]  # type: ignore[arg-type]
    else:
        raise UsageError(f"input_shapes {value!r}: expected a mapping name -> shape, a shape tuple (single-input "
                         "model) or 'NAME=D1xD2' strings")
    out: Shapes = {}
    for name, dims, shown in items:
        if name == "":
            raise UsageError(f"{FLAG} {shown!r}: the name before '=' is empty")
        shape = _parse_dims(dims, shown) if isinstance(dims, str) else tuple(dims)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise UsageError(f"{FLAG} {shown!r}: dims must be integers, got {list(shape)}")
        if any(d <= 0 for d in shape):
            raise UsageError(f"{FLAG} {shown!r}: dims must be positive (a dynamic dim takes a concrete size), got "
                             f"{'x'.join(map(str, shape))}")
        if name in out:
            raise UsageError(f"{FLAG}: input {'(unnamed)' if name is None else repr(name)} is given twice")
        out[name] = tuple(int(d) for d in shape)
    if None in out and len(out) > 1:
        raise UsageError(f"{FLAG}: a shape without NAME= is for a single-input model; name every input instead "
                         "(NAME=D1xD2...)")
    return out


def _list_inputs(refs: Sequence[InputRef]) -> str:
    many = len({r.signature for r in refs}) > 1
    return ", ".join(r.describe(scoped=many) for r in refs)


def resolve_input_shapes(given: Shapes, refs: Sequence[InputRef]) -> list[tuple[int, ...] | None]:
    """The shape to feed each of ``refs`` (None: not given), checked against the model's inputs."""
    if not given:
        return [None] * len(refs)
    out: list[tuple[int, ...] | None] = [None] * len(refs)
    by_sig: dict[str | None, list[int]] = {}
    for k, r in enumerate(refs):
        by_sig.setdefault(r.signature, []).append(k)
    for name, shape in given.items():
        if name is None:
            several = {s: ks for s, ks in by_sig.items() if len(ks) != 1}
            if several:
                raise UsageError(f"{FLAG} {'x'.join(map(str, shape))}: without NAME= it applies to a single-input "
                                 f"model; this one has {len(refs)} inputs ({_list_inputs(refs)}): use "
                                 f"{FLAG} NAME=D1xD2...")
            hits = [ks[0] for ks in by_sig.values()]
        else:
            hits = [k for k, r in enumerate(refs) if name in r.names
                    or (r.signature is not None and any(name == f"{r.signature}/{n}" for n in r.names))]
        if not hits:
            raise UsageError(f"{FLAG} {name}=...: the model has no input {name!r}; its inputs are "
                             f"{_list_inputs(refs)}")
        for k in hits:
            r = refs[k]
            shown = f"{FLAG} {'' if name is None else name + '='}{'x'.join(map(str, shape))}"
            if len(shape) != len(r.shape):
                raise UsageError(f"{shown}: input {r.describe()} has rank {len(r.shape)}, the shape given has "
                                 f"rank {len(shape)}")
            bad = [f"dim {d} is {w}, not {g}" for d, (w, g) in enumerate(zip(r.shape, shape))
                   if w is not None and w != g]
            if bad:
                raise UsageError(f"{shown}: input {r.describe()}: {'; '.join(bad)} (only its dynamic dims, '?', "
                                 "can take another size)")
            if out[k] is not None and out[k] != shape:
                raise UsageError(f"{FLAG}: input {r.describe()} is given two different shapes")
            out[k] = shape
    return out


def default_shape(ref: InputRef, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape fed when nothing else says: ``given``, else each dynamic dim as 1."""
    return given if given is not None else tuple(1 if d is None else d for d in ref.shape)


def dynamic_dims_error(refs: Sequence[InputRef], given: Sequence[tuple[int, ...] | None], why: str,
                       what: str = "the TFLite interpreter rejected",
                       alternative: str = " (or pass real inputs with --inputs)") -> UsageError | None:
    """The usage error for a run that failed on inputs whose dynamic dims were fed as 1: it names
    each such input, its dynamic dims and the flag to set (None when every dynamic dim was given, so
    the failure is about something else)."""
    open_refs = [r for r, g in zip(refs, given) if g is None and r.dynamic_dims]
    if not open_refs:
        return None
    several = len({x.signature for x in refs}) > 1
    parts = []
    for r in open_refs:
        dims = ", ".join(map(str, r.dynamic_dims))
        parts.append(f"input {r.describe(scoped=several)} "
                     f"(dynamic dim{'s' if len(r.dynamic_dims) > 1 else ''} {dims}, fed as "
                     f"{'x'.join(map(str, default_shape(r, None)))})")
    flags = dict.fromkeys(f"{FLAG} {r.names[0]}=" + "x".join("N" if d is None else str(d) for d in r.shape)
                          for r in open_refs)
    return UsageError(f"{what} the default shape (1 for each dynamic dim) of {'; '.join(parts)}. Set the shape "
                      f"to use: {' '.join(flags)}, each N a size the model accepts{alternative}. Cause: {why}")
