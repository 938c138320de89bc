"""The I/O plan of a verification: per signature, which tensors are fed and read (:class:`IOPlan`),
the inputs (seeded :func:`random_inputs`, or the user's through :func:`load_inputs` /
:func:`fit_input`), stateful models' repeated calls (:func:`is_stateful`, :func:`invocations`,
:data:`STATEFUL_CALLS`) and the model-kind predicates (:func:`has_hybrid_ops`,
:func:`is_quantized_model`). The rules that judge the outputs are in :mod:`.rules`, the reference
run in :mod:`.reference`; :mod:`.rules` states the whole contract.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..model import ir
from ..model.input_shapes import InputRef, default_shape, dims_of
from .verify_inputs import DEFAULT_RANGE, IntRule


@dataclass
class IOPlan:
    """What the verifier needs of one signature: names on both sides and the IR tensors."""

    signature: str | None  # TFLite signature key (None: plain subgraph-0 inputs/outputs)
    key: str  # SavedModel signature key
    tflite_inputs: list[str]
    tflite_outputs: list[str]
    saved_inputs: list[str]
    saved_outputs: list[str]
    input_tensors: list[ir.Tensor]
    output_tensors: list[ir.Tensor]
    input_dtypes: list[np.dtype]  # dtypes at the rebuilt model's boundary
    subgraph_index: int = 0
    #: tensor indices (in subgraph ``subgraph_index``) of the outputs after the signature's named
    #: ones: subgraph outputs the SignatureDef does not name, read by index in the interpreter
    extra_outputs: list[int] = field(default_factory=list)
    input_shapes: list[tuple[int, ...] | None] | None = None  # --input-shape per input (None: not given)
    #: per input, the :class:`.verify_inputs.IntRule` its random values follow (None: not an integer input)
    int_rules: list[IntRule | None] | None = None
    call: int = 0  # the invocation of a stateful model this plan stands for (see :func:`invocations`)

    def input_refs(self) -> list[InputRef]:
        """The inputs as :func:`.input_shapes.resolve_input_shapes` sees them (TFLite, SavedModel and
        tensor names)."""
        refs = []
        for k, t in enumerate(self.input_tensors):
            names = [n for n in (self.tflite_inputs[k] if k < len(self.tflite_inputs) else None,
                                 self.saved_inputs[k] if k < len(self.saved_inputs) else None, t.name) if n]
            refs.append(InputRef(self.signature, tuple(dict.fromkeys(names)), dims_of(t.shape_signature or t.shape)))
        return refs

    def given_shapes(self) -> list[tuple[int, ...] | None]:
        return list(self.input_shapes) if self.input_shapes is not None else [None] * len(self.input_tensors)


def random_inputs(plan: IOPlan, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs that exercise each input's range: floats in [-1, 1], quantized integers over
    their dtype's full range, other integers by the rule :mod:`.verify_inputs` derived from the graph
    (``plan.int_rules``; without one, random in [0, 3]), bools random. Call ``k > 0`` of a stateful
    model (``plan.call``) gets its own fresh values."""
    rng = np.random.default_rng(seed if not plan.call else [seed, plan.call])
    rules = plan.int_rules or [None] * len(plan.input_tensors)
    out = []
    for t, ref, given, rule in zip(plan.input_tensors, plan.input_refs(), plan.given_shapes(), rules):
        shape = default_shape(ref, given)
        name = t.type_name
        if name in ("FLOAT32", "FLOAT16", "FLOAT64"):
            a = rng.uniform(-1.0, 1.0, size=shape).astype(t.dtype)
        elif name in ("INT8", "UINT8", "INT16") and t.is_quantized:
            info = np.iinfo(t.dtype)
            a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t.dtype)
        elif name in ("INT8", "UINT8", "INT16", "INT32", "INT64", "UINT16", "UINT32"):
            if rule is None:
                rule = IntRule(np.array(DEFAULT_RANGE[0]), np.array(DEFAULT_RANGE[1]), "no rule derived",
                               derived=False)
            a = rule.sample(rng, tuple(shape), t.dtype)
        elif name == "BOOL":
            a = rng.integers(0, 2, size=shape).astype(bool)
        elif name == "STRING":
            words = np.array([b"tflite", b"inverter", b"hello world", b"", b"\xc3\xa9t\xc3\xa9"], dtype=object)
            a = words[rng.integers(0, len(words), size=shape)].astype(np.bytes_)
        else:
            raise UsageError(f"input {t.name!r} has type {name}; random inputs cannot be made for it, "
                             "pass --inputs FILE.npz")
        out.append(a)
    return out


def load_inputs(path: str, plan: IOPlan) -> list[np.ndarray]:
    """Inputs from an .npz keyed by input name (TFLite or SavedModel names) or an .npy (one input)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--inputs {path}: cannot read ({exc})") from None
    if isinstance(data, np.ndarray):
        if len(plan.input_tensors) != 1:
            raise UsageError(f"--inputs {path}: a .npy holds one array, the model has "
                             f"{len(plan.input_tensors)} inputs; use an .npz keyed by input name")
        arrays = [data]
    else:
        arrays = []
        for tn, sn in zip(plan.tflite_inputs or plan.saved_inputs, plan.saved_inputs):
            if tn in data:
                arrays.append(data[tn])
            elif sn in data:
                arrays.append(data[sn])
            elif len(plan.input_tensors) == 1 and len(data.files) == 1:
                arrays.append(data[data.files[0]])
            else:
                raise UsageError(f"--inputs {path}: no array for input {sn!r} (has: {', '.join(data.files)})")
    for a, t, given in zip(arrays, plan.input_tensors, plan.given_shapes()):
        want = t.shape_signature or t.shape
        if len(a.shape) != len(want) or any(w >= 0 and w != g for w, g in zip(want, a.shape)):
            raise UsageError(f"--inputs {path}: input {t.name!r} has shape {list(a.shape)}, the model expects "
                             f"{list(want)}")
        if given is not None and tuple(a.shape) != given:
            raise UsageError(f"--inputs {path}: input {t.name!r} has shape {list(a.shape)}, --input-shape says "
                             f"{'x'.join(map(str, given))}; drop one of them or make them agree")
    dtypes = plan.input_dtypes or [t.dtype for t in plan.input_tensors]
    return [fit_input(path, np.asarray(a), t, np.dtype(dt)) for a, t, dt in zip(arrays, plan.input_tensors, dtypes)]


def _first_bad(a: np.ndarray, bad: np.ndarray) -> Any:
    return a[tuple(np.argwhere(bad)[0])].item()


def fit_input(path: str, a: np.ndarray, t: ir.Tensor, boundary: np.dtype) -> np.ndarray:
    """A user's ``--inputs`` array as the interpreter's input ``t``, or a :class:`UsageError`.

    Integer (and bool) inputs take only integral values within the dtype's range (``1.0`` is fine,
    ``0.4``, ``300`` for uint8 or NaN are errors naming the input, the value and the dtype). With
    ``--float-io`` a quantized input (``boundary`` float) takes real values: they are quantized with
    the input's scale and zero point (rounded half away from zero onto the grid, as TFLite does), the
    interpreter gets those integers and the rebuilt model their dequantized values, so both see the
    same input; a real value whose quantized value falls outside the dtype's range is an error
    (never clipped). Float inputs take any number."""
    where = f"--inputs {path}: input {t.name!r} ({t.type_name})"
    if a.dtype.kind not in "biuf":
        if t.dtype.kind in "biuf":
            raise UsageError(f"{where} got {a.dtype} values; it takes numbers")
        return a.astype(t.dtype)
    if t.dtype.kind == "f":
        return a.astype(t.dtype)
    if t.is_quantized and boundary.kind == "f":  # --float-io: real values
        q = t.quantization
        if q.scale.size != 1:
            raise UsageError(f"{where} is quantized per channel; pass its integer values without --float-io")
        scale, zp = float(q.scale[0]), int(q.zero_point.ravel()[0]) if q.zero_point.size else 0
        x = a.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise UsageError(f"{where} holds {_first_bad(x, ~np.isfinite(x))!r}, not a finite real value")
        v = x / scale
        qv = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp
        info = np.iinfo(t.dtype)
        out = (qv < info.min) | (qv > info.max)
        if np.any(out):
            raise UsageError(f"{where} holds {_first_bad(x, out)!r}, outside the real range "
                             f"[{(info.min - zp) * scale:.6g}, {(info.max - zp) * scale:.6g}] its {t.type_name} "
                             f"quantization (scale {scale:.6g}, zero point {zp}) can represent")
        return qv.astype(t.dtype)
    x = a.astype(np.float64) if a.dtype.kind == "f" else a
    if a.dtype.kind == "f":
        frac = ~np.isfinite(x) | (np.floor(np.where(np.isfinite(x), x, 0.0)) != x)
        if np.any(frac):
            raise UsageError(f"{where} holds {_first_bad(x, frac)!r}, which is not an integer")
    lo, hi = (0, 1) if t.dtype.kind == "b" else (np.iinfo(t.dtype).min, np.iinfo(t.dtype).max)
    wide = x.astype(np.float64) if x.dtype.kind == "f" else x.astype(object) if x.dtype.kind == "u" else x.astype(np.int64)
    out = (wide < lo) | (wide > hi)
    if np.any(out):
        kind = "bool (0/1)" if t.dtype.kind == "b" else f"{t.dtype} range [{lo}, {hi}]"
        raise UsageError(f"{where} holds {_first_bad(a, np.asarray(out, bool))!r}, outside the {kind}")
    return x.astype(t.dtype)


#: Consecutive invocations verified for a stateful model (state carried on both sides).
STATEFUL_CALLS = 3
#: Ops (by key) that keep state between invocations: resource variables, run-once initialisers,
#: hash tables, and custom ops with internal state (the Signal library's spectral subtraction keeps
#: its noise estimate).
STATEFUL_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", "HASHTABLE",
                "CUSTOM:SignalFilterBankSpectralSubtraction")


def is_stateful(model: ir.Model) -> bool:
    """True when an invocation can change the next one's result: the model has variable tensors
    (``is_variable``: LSTM/SVDF state) or an op of :data:`STATEFUL_OPS`."""
    return any(t.is_variable for sg in model.subgraphs for t in sg.tensors) or any(
        op.name in STATEFUL_OPS or op.key in STATEFUL_OPS for sg in model.subgraphs for op in sg.operators)


def invocations(model: ir.Model, plans: list[IOPlan]) -> list[IOPlan]:
    """The runs to verify, in order: each plan once, or for a stateful model each plan
    :data:`STATEFUL_CALLS` times in a row (``call`` 0, 1, 2; fresh random inputs each call). Both
    the interpreter (one Interpreter object) and the rebuilt model (one loaded SavedModel) run
    them in this order, so state carries from call to call and across signatures alike."""
    if not is_stateful(model):
        return list(plans)
    from dataclasses import replace

    return [replace(p, call=c) for p in plans for c in range(STATEFUL_CALLS)]


def plan_subgraph(model: ir.Model, plan: IOPlan) -> ir.Subgraph:
    return model.subgraphs[plan.subgraph_index]


#: Ops whose dynamic-range (hybrid) kernels quantize their float input on the fly.
HYBRID_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM",
              "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN",
              "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF", "EMBEDDING_LOOKUP", "TRANSPOSE_CONV", "CONV_3D")


#: The float activation of a hybrid op, where it is not input 0: TRANSPOSE_CONV's inputs are
#: (output_shape, weights, input, bias); EMBEDDING_LOOKUP's (ids, table) have a float *output*.
_HYBRID_ACTIVATION = {"TRANSPOSE_CONV": ("input", 2), "EMBEDDING_LOOKUP": ("output", 0)}


def has_hybrid_ops(model: ir.Model) -> bool:
    """Float activations feeding int8/int4 constant weights of an op with a hybrid kernel."""
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.name not in HYBRID_OPS:
                continue
            side, k = _HYBRID_ACTIVATION.get(op.name, ("input", 0))
            idx = op.inputs if side == "input" else op.outputs
            if k >= len(idx) or idx[k] < 0:
                continue
            x = sg.tensors[idx[k]]
            weights = [sg.tensors[i] for j, i in enumerate(op.inputs) if i >= 0 and (side, j) != ("input", k)]
            if x.type_name == "FLOAT32" and any(w.is_constant and w.type_name in ("INT8", "INT4") for w in weights):
                return True
    return False


def is_quantized_model(model: ir.Model) -> bool:
    """True when some activation (non-constant tensor) carries quantization parameters."""
    return any(t.is_quantized and not t.is_constant for sg in model.subgraphs for t in sg.tensors)
