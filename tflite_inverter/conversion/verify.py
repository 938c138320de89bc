"""Verify a rebuilt model against the original run in the TFLite interpreter.

The interpreter runs in a child process (:mod:`._interp_child`): it can crash on real files, and a
crash must end in a clear message, not take the tool down. Both sides get the same seeded inputs
(or the user's), and every output is compared by exactly one of these rules (:func:`compare_output`),
which is printed per output with its threshold and the measured value:

* ``exact`` -- string, bool and integer outputs without a quantization scale (indices, argmax maps,
  counts): every element equal to the reference. Where the interpreter's two kernel sets disagree
  on an element, either of their values is accepted for that element.
* ``lsb`` -- integer outputs with a scale, and float outputs that are the DEQUANTIZE of a quantized
  tensor (judged in that tensor's scale): >= 99 % of the elements within 1 LSB and none beyond
  2 LSB (float outputs: 1 LSB is ``1.001 x scale``, for the float rounding of the dequantized value).
* ``float`` -- every other float output: max abs error <= max(1e-4 x max|ref|, spread), where
  max|ref| is floored at 1e-6 and ``spread`` is the reference's own imprecision, measured: the max
  abs difference between the interpreter's default kernels (XNNPACK) and its built-in kernels
  (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``) on the same inputs (0 when only one kernel set ran).
  ``--tolerance T`` replaces 1e-4 by T and governs the DEQUANTIZE outputs of the ``lsb`` rule too.

In every rule, elements that are NaN, +inf or -inf in both outputs match; a non-finite value
against anything else is a mismatch. A shape different from the reference's is a mismatch. The
reference is always the default kernels' output (or the built-in kernels' when the default ones
cannot run the model). There is no loosening by model kind.

Inputs: non-quantized integer inputs follow the rules :mod:`.verify_inputs` derives from the
graph (indices within the indexed dim, loop bounds >= 1, ...). When the interpreter rejects them,
:func:`reference_outputs` lowers them to their rule's lowest value and, if that runs, the
verification is *weak* (``OutputCheck.weak`` says why; :func:`check_status` gives ``"weak"``, never
a match); values are never replaced silently. ``--inputs`` values must fit their input
(:func:`fit_input`). Stateful models (:func:`is_stateful`) are checked on :data:`STATEFUL_CALLS`
consecutive calls per signature, state carried on both sides (:func:`invocations`;
``OutputCheck.call``).

Dynamic input dims (-1 in ``shape_signature``) are fed at the shape ``--input-shape`` gives
(:attr:`IOPlan.input_shapes`, see :mod:`.input_shapes`), else as 1; when the interpreter rejects
that default, :func:`reference_outputs` raises a :class:`UsageError` naming the dynamic inputs and
the flag, not an :class:`InterpreterError`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InterpreterError, UsageError
from ..model import ir
from ..model.input_shapes import InputRef, default_shape, dims_of, dynamic_dims_error
from ..model.qparams import lsb_scale
from .verify_inputs import DEFAULT_RANGE, IntRule

#: ``float`` rule: max abs error <= max(FLOAT_TOL x max|reference|, reference spread).
FLOAT_TOL = 1e-4
#: ``float`` rule: max|reference| is floored at this (an all-zero reference still has a bound).
REF_MAX_FLOOR = 1e-6
#: ``lsb`` rule: at least this fraction of elements within 1 LSB, none beyond LSB_MAX.
LSB_WITHIN_1 = 0.99
LSB_MAX = 2
#: ``lsb`` rule on float outputs: 1 LSB is (1 + LSB_FLOAT_SLACK) x scale (float rounding of dequantized values).
LSB_FLOAT_SLACK = 1e-3


@dataclass
class OutputCheck:
    signature: str
    name: str
    shape: list[int]
    dtype: str
    max_abs_err: float
    max_rel_err: float
    ref_max_abs: float
    lsb_scale: float | None  # set when errors are measured in LSBs
    max_lsb: float | None
    within_1_lsb: float | None  # fraction of elements within 1 LSB
    exact_fraction: float | None  # for non-quantized integer/bool outputs
    tolerance: str  # the rule, in words, with its numbers
    passed: bool
    rule: str = ""  # "exact", "lsb", "float" or "shape" (see the module docstring)
    threshold: dict[str, float] = field(default_factory=dict)  # the rule's bounds ...
    measured: dict[str, float] = field(default_factory=dict)  # ... and the values measured against them
    #: how far the interpreter's built-in kernels are from its default ones, in the rule's unit:
    #: ``float`` max abs difference, ``lsb`` max difference in LSBs, ``exact`` number of differing
    #: elements (None: not measured, only one kernel set ran)
    reference_spread: float | None = None
    nonfinite_mismatches: int = 0  # elements where NaN/inf in one output is not the same in the other
    call: int = 0  # which invocation of a stateful model (0: the first; see STATEFUL_CALLS)
    weak: str = ""  # why the inputs were not meaningful (empty: they were; see verify_inputs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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


def run_tflite(model_path: str, runs: list[tuple[str | None, list[str], list[str], list[np.ndarray]]],
               timeout: float = 600.0, info: dict[str, str] | None = None,
               extras: list[tuple[int, list[int]]] | None = None, builtin: bool = False) -> list[list[np.ndarray]]:
    """Run the original model in the interpreter (child process); one output list per run.

    ``info`` (if given) receives ``kernels``: which kernels produced the reference, and
    ``reference``: the runtime and its version. ``extras`` (one ``(subgraph index, tensor indices)``
    per run) names tensors read after the run's invocation and appended to its outputs. ``builtin``
    runs the built-in kernels only (no XNNPACK)."""
    extras = extras or [(0, [])] * len(runs)
    specs = [{"signature": s, "inputs": i, "outputs": o, "subgraph": sg, "extra": list(ex)}
             for (s, i, o, _), (sg, ex) in zip(runs, extras)]
    return _run_child("tflite_inverter.conversion._interp_child", "the TFLite interpreter", model_path, specs,
                      [arrays for *_, arrays in runs], timeout, info, ["--builtin"] if builtin else [])


def run_micro(model_path: str, runs: list[tuple[list[int], list[int], list[np.ndarray]]], timeout: float = 600.0,
              info: dict[str, str] | None = None) -> list[list[np.ndarray]]:
    """Run the original model in TFLite Micro (child process :mod:`._micro_child`); one output list
    per run. Each run is ``(input positions, output positions, arrays)``, positions in subgraph 0's
    inputs/outputs. Raises :class:`InterpreterError`; ``reason`` starts with
    :data:`MICRO_NOT_INSTALLED` when ``tflite_micro`` is not installed."""
    specs = [{"input_pos": list(i), "output_pos": list(o)} for i, o, _ in runs]
    return _run_child("tflite_inverter.conversion._micro_child", "TFLite Micro", model_path, specs,
                      [arrays for *_, arrays in runs], timeout, info, [])


#: :func:`run_micro`'s ``reason`` when the second reference is not installed.
MICRO_NOT_INSTALLED = "tflite-micro is not installed"


def _run_child(module: str, what: str, model_path: str, specs: list[dict[str, Any]],
               feeds: list[list[np.ndarray]], timeout: float, info: dict[str, str] | None,
               flags: list[str]) -> list[list[np.ndarray]]:
    """Run ``python -m module MODEL RUNS.json IN.npz OUT.npz [flags]`` and read its outputs back."""
    with tempfile.TemporaryDirectory(prefix="tflite-inverter-verify-") as tmp:
        runs_path = os.path.join(tmp, "runs.json")
        in_path = os.path.join(tmp, "in.npz")
        out_path = os.path.join(tmp, "out.npz")
        with open(runs_path, "w") as fh:
            json.dump(specs, fh)
        np.savez(in_path, **{f"r{r}_i{k}": a for r, arrays in enumerate(feeds) for k, a in enumerate(arrays)})
        cmd = [sys.executable, "-m", module, os.path.abspath(model_path), runs_path, in_path, out_path] + flags
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise InterpreterError(f"{what} did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            if module.endswith("_micro_child") and proc.returncode == 3:  # _micro_child.EXIT_NOT_INSTALLED
                reason = f"{MICRO_NOT_INSTALLED} (pip install tflite-micro)"
                raise InterpreterError(f"{reason}; it is the reference for {os.path.basename(model_path)}",
                                       reason=reason)
            if proc.returncode < 0:
                why = reason = f"crashed with signal {-proc.returncode}"
            else:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                last = lines[-1] if lines else f"exit code {proc.returncode}"
                reason = last if len(last) <= 300 else last[:300] + " ..."
                why = "failed: " + reason
            raise InterpreterError(f"{what} {why} while running the original model "
                                   f"{os.path.basename(model_path)}; it cannot serve as the reference", reason=reason)
        data = np.load(out_path, allow_pickle=False)
        if info is not None:
            for key in ("kernels", "reference"):
                if f"__{key}__" in data:
                    info[key] = str(data[f"__{key}__"])
        outs = []
        for r in range(len(specs)):
            k = 0
            got = []
            while f"r{r}_o{k}" in data:
                got.append(data[f"r{r}_o{k}"])
                k += 1
            outs.append(got)
        return outs


def int8_svdf_narrow_inputs(op: ir.Operator, sg: ir.Subgraph) -> list[int]:
    """Inputs 2 (weights_time) and 4 (state) of an int8 SVDF that are int8, not the int16 the stock
    kernel assumes.

    The stock interpreter's SVDF (``tensorflow/lite/kernels/svdf.cc``, int8 input) never checks
    their type: ``Eval`` passes ``GetTensorData<int16_t>(weights_time)`` and
    ``GetTensorData<int16_t>(state)`` to ``reference_ops::EvalIntegerSVDF``, reading twice their byte
    size (past the end of both buffers) and writing the shifted state past the variable. TFLite
    Micro's SVDF (``micro/kernels/svdf_common.cc``) has an int8 variant of the same kernel
    (``EvalInt8SvdfReference``) that reads them as int8, with the state's zero point."""
    def tensor(i: int) -> ir.Tensor | None:
        return sg.tensors[op.inputs[i]] if i < len(op.inputs) and op.inputs[i] >= 0 else None

    x = tensor(0)
    if op.name != "SVDF" or x is None or x.type_name != "INT8":
        return []
    return [i for i in (2, 4) if (t := tensor(i)) is not None and t.type_name == "INT8"]


def stock_misreads(model: ir.Model) -> list[str]:
    """Ops the stock interpreter runs but computes wrongly, so that it cannot be the reference (one
    line each, for the note). Decided from the IR (op, tensor types), never from the file name."""
    by_kind: dict[str, list[str]] = {}
    for s, sg in enumerate(model.subgraphs):
        for k, op in enumerate(sg.operators):
            narrow = int8_svdf_narrow_inputs(op, sg)
            if narrow:
                names = " and ".join({2: "time weights", 4: "state"}[i] for i in narrow)
                by_kind.setdefault(names, []).append(f"op {k} of subgraph {s}")
    return [f"{len(where)} int8 SVDF op(s) ({', '.join(where)}) with int8 {names}, which the stock interpreter's "
            "kernel reads as int16 (past the end of their buffers)" for names, where in by_kind.items()]


def micro_positions(model: ir.Model, plan: IOPlan) -> tuple[list[int], list[int]] | str:
    """``plan``'s inputs and outputs as positions in subgraph 0's inputs/outputs (how TFLite Micro
    addresses them), or why TFLite Micro cannot run it."""
    if plan.subgraph_index != 0:
        return f"signature {plan.key!r} runs subgraph {plan.subgraph_index}; TFLite Micro runs subgraph 0 only"
    sg = model.subgraphs[0]
    ins, outs = list(sg.inputs), list(sg.outputs)
    missing = [t.name for t in plan.input_tensors if t.index not in ins]
    missing += [t.name for t in plan.output_tensors if t.index not in outs]
    if missing:
        return f"tensor(s) {', '.join(missing)} are not inputs/outputs of subgraph 0"
    return [ins.index(t.index) for t in plan.input_tensors], [outs.index(t.index) for t in plan.output_tensors]


def select_reference(stock_error: str | None, misreads: list[str]) -> str | None:
    """Why TFLite Micro must be the reference (None: the stock interpreter is).

    ``misreads``: :func:`stock_misreads` of the model (the stock interpreter is then not run at all:
    its results are undefined and it may corrupt its own heap); ``stock_error``: the stock
    interpreter's failure, if it ran and failed. Only a missing op (:func:`lacks_an_op`) hands over:
    any other failure (a shape, a crash, an invalid model) stays the stock interpreter's verdict."""
    if misreads:
        return "; ".join(misreads)
    if stock_error is not None and lacks_an_op(stock_error):
        said = re.sub(r"\s*See instructions: \S+", "", " ".join(stock_error.split()))
        return f"the stock interpreter lacks an op ({said[:200]})"
    return None


def reference_outputs(model_path: str, plans: list[IOPlan], feeds: list[list[np.ndarray]] | None, seed: int = 0,
                      spread: list[list[np.ndarray] | None] | None = None, weak: list[str] | None = None,
                      model: ir.Model | None = None, info: dict[str, str] | None = None
                      ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]], list[str]]:
    """Run the original on ``feeds`` (or seeded random inputs): (feeds, outputs, notes).

    The plans run in order on one interpreter (a stateful model's consecutive calls, from
    :func:`invocations`, carry its state). Random non-quantized integer inputs follow the rules
    :mod:`.verify_inputs` derived from the graph (``IOPlan.int_rules``). When the interpreter
    rejects them (an index or count out of range for a consumer no rule knows, or a derived rule
    that is wrong), the run is repeated once with every such input at its rule's lowest value (0
    for an input without a rule; exact shape values are kept). If that run succeeds the reference
    exists but its inputs are not meaningful: ``weak`` (if given) receives, per plan, the reason
    naming each such input, its rule and the interpreter's message (empty string: not weak), and
    the verification is *weak* -- never a plain match. If it fails too, the original failure stands.

    The reference is the stock interpreter (:func:`run_tflite`), unless :func:`select_reference`
    hands over to TFLite Micro (:func:`run_micro`): when the stock interpreter lacks an op (e.g.
    tflite-micro's ``Signal*`` audio ops) or the model has an op it misreads (:func:`stock_misreads`;
    then the stock interpreter is not run). ``info`` (if given) receives ``reference`` (runtime and
    version, e.g. ``tflite-micro 0.dev2026...`` or ``ai-edge-litert 2.3.0``), ``kernels`` and, when
    TFLite Micro was used, ``reference_why``; a note says so. When TFLite Micro is needed but not
    installed or fails too, :class:`InterpreterError` names both references and what each said.
    ``model`` is the IR of ``model_path`` (read when not given).

    When the interpreter rejects random inputs whose dynamic dims were fed as 1 (no
    ``--input-shape`` for them), that is a :class:`UsageError` naming those inputs and the flag,
    unless it lacks an op (an unresolved custom or Flex op fails at any shape): the reference is
    missing, not the model's fault.

    ``spread`` (if given) receives, per plan, the outputs of the interpreter's built-in kernels on
    the same feeds when the reference came from the default kernels (``None`` when they were not
    run or failed, with a note): the reference's own spread is their difference. TFLite Micro has
    one kernel set: no spread.
    """
    if model is None:
        from ..model.reader import read_model

        model = read_model(model_path)
    notes: list[str] = []
    info = {} if info is None else info
    user = feeds is not None
    feeds = feeds if user else [random_inputs(p, seed) for p in plans]
    extras = [(p.subgraph_index, list(p.extra_outputs)) for p in plans]
    weak_why = [""] * len(plans)
    for p in plans:
        if p.extra_outputs and not p.call:
            named = len(p.output_tensors) - len(p.extra_outputs)
            notes.append(f"signature {p.key!r} names {named} of its subgraph's {len(p.output_tensors)} outputs; the "
                         f"others ({', '.join(p.saved_outputs[named:])}) are outputs of the SavedModel signature "
                         "too and are verified")

    def run(fs: list[list[np.ndarray]], builtin: bool = False) -> list[list[np.ndarray]]:
        return run_tflite(model_path, [(p.signature, p.tflite_inputs, p.tflite_outputs, f)
                                       for p, f in zip(plans, fs)], info=info, extras=extras, builtin=builtin)

    why_micro = select_reference(None, stock_misreads(model))
    if why_micro is None:
        try:
            try:
                refs = run(feeds)
            except InterpreterError as exc:
                lowered = [] if user or lacks_an_op(str(exc)) else _lowest_values(plans, feeds)
                if not lowered:
                    raise
                try:
                    refs = run([f for f, _ in lowered])
                except InterpreterError:
                    raise exc from None
                msg = " ".join((exc.reason or str(exc)).split())[:200]
                for k, (_, names) in enumerate(lowered):
                    if names:
                        weak_why[k] = (f"the interpreter rejected the random values of {'; '.join(names)} "
                                       f"({msg}); verified with each at its lowest value only -- pass --inputs "
                                       "FILE.npz with meaningful values")
                feeds = [f for f, _ in lowered]
                first = next(w for w in weak_why if w)
                notes.append(f"WEAK verification: {first}")
        except InterpreterError as exc:
            why_micro = select_reference(exc.reason or str(exc), [])
            if why_micro is None:
                usage = None if user or lacks_an_op(str(exc)) else default_shape_error(plans, exc.reason or str(exc))
                if usage is None:
                    raise
                raise usage from None
    if weak is not None:
        weak.extend(weak_why)
    if why_micro is not None:
        refs = _micro_reference(model, model_path, plans, feeds, why_micro, info)
        notes.append(f"reference: {info['reference']}, not the stock interpreter: {why_micro}; "
                     "reference spread not measured (TFLite Micro has one kernel set)")
        if spread is not None:
            spread.extend([None] * len(plans))
        return feeds, refs, notes
    if info.get("kernels", "").startswith("built-in"):
        notes.append(f"reference from the interpreter's {info['kernels']}; reference spread not measured")
        if spread is not None:
            spread.extend([None] * len(plans))
    elif spread is not None:
        try:
            spread.extend(run(feeds, builtin=True))
        except InterpreterError as exc:
            spread.extend([None] * len(plans))
            notes.append(f"reference spread not measured: the built-in kernels failed ({str(exc)[:160]})")
    return feeds, refs, notes


def _lowest_values(plans: list[IOPlan], feeds: list[list[np.ndarray]]) -> list[tuple[list[np.ndarray], list[str]]]:
    """Per plan, the feeds with every non-quantized integer input (other than exact shape values)
    at its rule's lowest value, and the inputs so changed, each with its rule; [] when none is."""
    out, changed = [], False
    for p, f in zip(plans, feeds):
        f = list(f)
        names = []
        rules = p.int_rules or [None] * len(p.input_tensors)
        for j, (t, rule) in enumerate(zip(p.input_tensors, rules)):
            if t.dtype.kind not in "iu" or t.is_quantized or (rule is not None and rule.values is not None):
                continue
            low = np.array(0) if rule is None else rule.low
            if low.ndim and (not f[j].ndim or f[j].shape[-1] != low.shape[0]):
                low = np.array(low.max())
            f[j] = np.broadcast_to(low, f[j].shape).astype(f[j].dtype)
            name = p.saved_inputs[j] if j < len(p.saved_inputs) else t.name
            names.append(f"input {name!r} ({rule.describe() if rule is not None else 'no rule: random in [0, 3]'})")
        changed = changed or bool(names)
        out.append((f, names))
    return out if changed else []


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


def _micro_reference(model: ir.Model, model_path: str, plans: list[IOPlan], feeds: list[list[np.ndarray]],
                     why: str, info: dict[str, str]) -> list[list[np.ndarray]]:
    """The reference outputs from TFLite Micro, or an :class:`InterpreterError` naming both references."""
    name = os.path.basename(model_path)
    positions = [micro_positions(model, p) for p in plans]
    cannot = next((x for x in positions if isinstance(x, str)), None)
    try:
        if cannot is not None:
            raise InterpreterError(f"TFLite Micro cannot run {name}: {cannot}", reason=cannot)
        runs = [(ins, outs, f) for (ins, outs), f in zip(positions, feeds)]  # type: ignore[misc]
        refs = run_micro(model_path, runs, info=info)
    except InterpreterError as exc:
        micro = ("is not installed (pip install tflite-micro)" if (exc.reason or "").startswith(MICRO_NOT_INSTALLED)
                 else f"failed: {exc.reason or exc}")
        raise InterpreterError(f"no reference for {name}: {why}; the second reference, TFLite Micro, "
                               f"{micro}", reason=exc.reason) from None
    info["reference_why"] = why
    return refs


def default_shape_error(plans: list[IOPlan], why: str, what: str = "the TFLite interpreter rejected"
                        ) -> UsageError | None:
    """The usage error for a run on random inputs that failed (``why``) while some dynamic dims were
    fed as 1 for want of ``--input-shape``; None when there is none such."""
    return dynamic_dims_error([r for p in plans for r in p.input_refs()], [g for p in plans for g in p.given_shapes()],
                              why, what)


#: Interpreter messages that mean an op is missing from the runtime, whatever the input shape.
_MISSING_OP_MESSAGES = ("unresolved custom op", "select tensorflow op", "flex delegate", "is not supported by "
                        "this interpreter", "didn't find op for builtin opcode")


def lacks_an_op(message: str) -> bool:
    """True when an interpreter failure says an op is missing (not a shape the model rejects)."""
    low = message.lower()
    return any(m in low for m in _MISSING_OP_MESSAGES)


def _nonfinite(r: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, int]:
    """(mask of the elements compared as numbers, number of non-finite mismatches).

    An element that is NaN, +inf or -inf in both outputs matches and is left out of the error."""
    fin = np.isfinite(r) & np.isfinite(g)
    same = (r == g) | (np.isnan(r) & np.isnan(g))
    return fin, int(np.count_nonzero(~fin & ~same))


def compare_output(signature: str, name: str, ref: np.ndarray, got: np.ndarray, t: ir.Tensor,
                   lsb_scale: float | None, tolerance: float | None = None, alt: np.ndarray | None = None
                   ) -> OutputCheck:
    """Judge one output by the one rule that applies to it (see the module docstring).

    ``ref``: the interpreter's output (default kernels); ``alt``: the same output from its built-in
    kernels (the reference's spread), or ``None``; ``lsb_scale``: the scale a float output is the
    dequantized value of (:func:`..model.qparams.lsb_scale`); ``tolerance``: the user's ``--tolerance``.
    """
    ref = np.asarray(ref)
    got = np.asarray(got)
    alt = None if alt is None or np.shape(alt) != ref.shape else np.asarray(alt)
    shape = list(ref.shape)
    base = dict(signature=signature, name=name, shape=shape, dtype=str(ref.dtype))
    if ref.shape != got.shape:
        return OutputCheck(**base, max_abs_err=float("inf"), max_rel_err=float("inf"), ref_max_abs=0.0,
                           lsb_scale=lsb_scale, max_lsb=None, within_1_lsb=None, exact_fraction=None,
                           tolerance=f"shape {list(got.shape)} != reference {shape}", passed=False, rule="shape")
    numeric = ref.dtype.kind in "iuf" and got.dtype.kind in "iufb"
    if not numeric or (ref.dtype.kind in "iub" and not (ref.dtype.kind in "iu" and t.is_quantized)):
        # exact: strings, bools, integers without a scale
        eq = np.asarray(ref == got)
        if eq.shape != ref.shape:  # e.g. strings against numbers
            eq = np.zeros(ref.shape, bool)
        either = eq | (alt == got) if alt is not None and alt.dtype == ref.dtype else eq
        frac = float(np.mean(either)) if ref.size else 1.0
        spread_n = int(np.count_nonzero(alt != ref)) if alt is not None and alt.dtype == ref.dtype else None
        if numeric and ref.size:
            d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
            max_abs, max_rel = float(d.max()), float((d / np.maximum(np.abs(ref.astype(np.float64)), 1e-12)).max())
        else:
            max_abs = max_rel = 0.0 if frac == 1.0 else 1.0
        text = "exact: every element equal to the reference"
        if spread_n:
            text += f" (or to the built-in kernels' value at the {spread_n} element(s) where the kernel sets differ)"
        return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=0.0, lsb_scale=None,
                           max_lsb=None, within_1_lsb=None, exact_fraction=frac, tolerance=text, passed=frac == 1.0,
                           rule="exact", threshold={"equal_fraction": 1.0}, measured={"equal_fraction": frac},
                           reference_spread=None if spread_n is None else float(spread_n))
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    fin, bad = _nonfinite(r, g)
    with np.errstate(invalid="ignore"):  # inf - inf: left out by ``fin``
        diff = np.where(fin, np.abs(r - g), 0.0)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_max = float(np.abs(np.where(np.isfinite(r), r, 0.0)).max()) if r.size else 0.0
    rel = diff / np.maximum(np.abs(np.where(fin, r, 1.0)), 1e-12)
    max_rel = float(rel.max()) if rel.size else 0.0
    spread = vs_alt = None
    if alt is not None:
        a = alt.astype(np.float64)
        both = np.isfinite(r) & np.isfinite(a)
        ours = np.isfinite(g) & np.isfinite(a)
        with np.errstate(invalid="ignore"):
            spread = float(np.abs(np.where(both, r - a, 0.0)).max()) if a.size else 0.0
            vs_alt = float(np.abs(np.where(ours, g - a, 0.0)).max()) if a.size else 0.0
    is_int_q = ref.dtype.kind in "iu" and t.is_quantized
    if is_int_q or (lsb_scale and tolerance is None):
        unit = 1.0 if is_int_q else lsb_scale * (1.0 + LSB_FLOAT_SLACK)
        units = diff / unit
        within1 = float(np.mean(fin & (units <= 1.0))) if units.size else 1.0  # a non-finite mismatch is not within
        mx = float(units.max()) if units.size else 0.0
        ok = within1 >= LSB_WITHIN_1 and mx <= LSB_MAX and bad == 0
        text = (f">= {LSB_WITHIN_1:.0%} of elements within 1 LSB, none beyond {LSB_MAX} LSB"
                + ("" if is_int_q else f" (LSB = {lsb_scale:.3g}, the scale of the dequantized tensor)"))
        if spread is not None and not is_int_q:
            spread_lsb = spread / unit
        else:
            spread_lsb = spread
        return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=ref_max,
                           lsb_scale=lsb_scale, max_lsb=mx, within_1_lsb=within1, exact_fraction=None, tolerance=text,
                           passed=ok, rule="lsb",
                           threshold={"within_1_lsb_min": LSB_WITHIN_1, "max_lsb": float(LSB_MAX),
                                      "nonfinite_mismatches": 0.0},
                           measured={"within_1_lsb": within1, "max_lsb": mx, "nonfinite_mismatches": float(bad)},
                           reference_spread=spread_lsb, nonfinite_mismatches=bad)
    tol = FLOAT_TOL if tolerance is None else tolerance
    rel_bound = tol * max(ref_max, REF_MAX_FLOOR)
    bound = max(rel_bound, spread or 0.0)
    ok = max_abs <= bound and bad == 0
    src = "--tolerance " if tolerance is not None else ""
    text = f"max abs err <= max({src}{tol:g} x max|ref|, reference spread) = {bound:.3g}"
    if spread is not None and spread > rel_bound:
        text += f" (the spread governs: default vs built-in kernels differ by {spread:.3g})"
    elif spread is None:
        text += " (spread not measured)"
    return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=ref_max, lsb_scale=None,
                       max_lsb=None, within_1_lsb=None, exact_fraction=None, tolerance=text, passed=ok, rule="float",
                       threshold={"max_abs_err": bound, "relative_term": rel_bound, "spread_term": spread or 0.0,
                                  "nonfinite_mismatches": 0.0},
                       measured={"max_abs_err": max_abs, "nonfinite_mismatches": float(bad),
                                 **({} if vs_alt is None else {"max_abs_err_vs_builtin_kernels": vs_alt})},
                       reference_spread=spread, nonfinite_mismatches=bad)


def plan_subgraph(model: ir.Model, plan: IOPlan) -> ir.Subgraph:
    return model.subgraphs[plan.subgraph_index]


def compare_plan(model: ir.Model, plan: IOPlan, ref: list[np.ndarray], got: Mapping[str, Any],
                 alt: list[np.ndarray] | None = None, tolerance: float | None = None, weak: str = ""
                 ) -> list[OutputCheck]:
    """Every output of one signature: ``ref`` (interpreter, in ``plan.output_tensors`` order), ``got``
    (rebuilt model, by SavedModel output name; arrays or tensors with ``.numpy()``), ``alt`` (the
    built-in kernels' outputs, for the reference spread). Each check records ``plan.call`` (the
    invocation of a stateful model) and ``weak`` (why the inputs were not meaningful, if they were not)."""
    from ..ops.common import dequantize_array

    sg = plan_subgraph(model, plan)
    checks = []
    for k, (name, t) in enumerate(zip(plan.saved_outputs, plan.output_tensors)):
        g = got[name]
        g = g.numpy() if hasattr(g, "numpy") else np.asarray(g)
        r = ref[k] if k < len(ref) else np.zeros(0)
        a = alt[k] if alt is not None and k < len(alt) else None
        if g.dtype != r.dtype and t.is_quantized and r.dtype.kind in "iu":
            r = dequantize_array(r, t.quantization)  # --float-io: compare real values
            a = None if a is None else dequantize_array(a, t.quantization)
        c = compare_output(plan.key, name, r, g, t, lsb_scale(sg, t), tolerance, a)
        c.call, c.weak = plan.call, weak
        checks.append(c)
    return checks


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


def pct(x: float) -> str:
    """A fraction as a percentage that never rounds a shortfall up to 100 %."""
    if x >= 1.0:
        return "100%"
    return f"{np.floor(x * 1e4) / 100:.2f}%"


def _fmt_threshold(c: OutputCheck) -> tuple[str, str]:
    th, me = c.threshold, c.measured
    if c.rule == "float":
        spread = "" if c.reference_spread is None else f", spread {c.reference_spread:.2g}"
        vs_alt = me.get("max_abs_err_vs_builtin_kernels")
        governs = th["spread_term"] > th["relative_term"]
        return (f"max abs <= {th['max_abs_err']:.3g}{spread}" + (" (spread governs)" if governs else ""),
                f"max abs {me['max_abs_err']:.3g}"
                + (f" ({vs_alt:.2g} from the built-in kernels)" if governs and vs_alt is not None else "")
                + (f", {c.nonfinite_mismatches} NaN/inf differ" if c.nonfinite_mismatches else ""))
    if c.rule == "lsb":
        return (f">= {100 * th['within_1_lsb_min']:.0f}% <= 1 LSB, max <= {th['max_lsb']:g} LSB",
                f"{pct(me['within_1_lsb'])} <= 1 LSB, max {me['max_lsb']:.3g} LSB"
                + (f", {c.nonfinite_mismatches} NaN/inf differ" if c.nonfinite_mismatches else ""))
    if c.rule == "exact":
        return "100% equal", f"{pct(me['equal_fraction'])} equal"
    return "-", c.tolerance


def check_status(checks: list[OutputCheck]) -> str:
    """The verdict of a list of checks: ``"not verified"`` (nothing compared), ``"FAIL"`` (an output
    over its threshold), ``"weak"`` (all within, but on inputs the tool could not make meaningful:
    never a match) or ``"ok"``."""
    if not checks:
        return "not verified"
    if not all(c.passed for c in checks):
        return "FAIL"
    return "weak" if any(c.weak for c in checks) else "ok"


def format_checks(checks: list[OutputCheck]) -> str:
    """One row per output (per call of a stateful model): the verification table printed by
    ``convert`` (rule, threshold, measured, status: ok, WEAK or FAIL)."""
    stateful = any(c.call for c in checks)
    head = ["signature", *(["call"] if stateful else []), "output", "shape", "rule", "threshold", "measured", "status"]
    rows = []
    for c in checks:
        threshold, measured = _fmt_threshold(c)
        rows.append([c.signature, *([str(c.call + 1)] if stateful else []), c.name,
                     "x".join(map(str, c.shape)) or "scalar", c.rule or "-", threshold, measured,
                     ("WEAK" if c.weak else "ok") if c.passed else "FAIL"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)
