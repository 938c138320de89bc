"""Verify a rebuilt model against the original run in the TFLite interpreter.

The interpreter runs in a child process (:mod:`._interp_child`): it can crash on real files, and a
crash must end in a clear message, not take the tool down. Both sides get the same seeded inputs
(or the user's), and every output is compared: max abs error, max relative error, and for quantized
outputs the error in LSBs (steps of the output's scale).

Dynamic input dims (-1 in ``shape_signature``) are fed at the shape ``--input-shape`` gives
(:attr:`IOPlan.input_shapes`, see :mod:`.input_shapes`), else as 1; when the interpreter rejects
that default, :func:`reference_outputs` raises a :class:`UsageError` naming the dynamic inputs and
the flag, not an :class:`InterpreterError`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import ir
from .errors import InterpreterError, UsageError
from .input_shapes import InputRef, default_shape, dims_of, dynamic_dims_error

#: Float outputs of float models: max abs error <= FLOAT_TOL * max|reference| (issue acceptance).
FLOAT_TOL = 1e-4
#: Float outputs of quantized models that carry no scale of their own (e.g. after a float softmax).
MIXED_FLOAT_TOL = 1e-2


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
    tolerance: str
    passed: bool

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
    input_shapes: list[tuple[int, ...] | None] | None = None  # --input-shape per input (None: not given)

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
    """Seeded inputs that exercise each input's range (integers over the full quantized range)."""
    rng = np.random.default_rng(seed)
    out = []
    for t, ref, given in zip(plan.input_tensors, plan.input_refs(), plan.given_shapes()):
        shape = default_shape(ref, given)
        name = t.type_name
        if name in ("FLOAT32", "FLOAT16", "FLOAT64"):
            a = rng.uniform(-1.0, 1.0, size=shape).astype(t.dtype)
        elif name in ("INT8", "UINT8", "INT16") and t.is_quantized:
            info = np.iinfo(t.dtype)
            a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t.dtype)
        elif name in ("INT8", "UINT8", "INT16", "INT32", "INT64", "UINT16", "UINT32"):
            a = rng.integers(0, 4, size=shape).astype(t.dtype)  # small: often indices or counts
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
    return [np.asarray(a).astype(t.dtype) for a, t in zip(arrays, plan.input_tensors)]


def run_tflite(model_path: str, runs: list[tuple[str | None, list[str], list[str], list[np.ndarray]]],
               timeout: float = 600.0, info: dict[str, str] | None = None) -> list[list[np.ndarray]]:
    """Run the original model in the interpreter (child process); one output list per run.

    ``info`` (if given) receives ``kernels``: which kernels produced the reference."""
    with tempfile.TemporaryDirectory(prefix="tflite-inverter-verify-") as tmp:
        runs_path = os.path.join(tmp, "runs.json")
        in_path = os.path.join(tmp, "in.npz")
        out_path = os.path.join(tmp, "out.npz")
        with open(runs_path, "w") as fh:
            json.dump([{"signature": s, "inputs": i, "outputs": o} for s, i, o, _ in runs], fh)
        np.savez(in_path, **{f"r{r}_i{k}": a for r, (_, _, _, arrays) in enumerate(runs)
                              for k, a in enumerate(arrays)})
        cmd = [sys.executable, "-m", "tflite_inverter._interp_child", os.path.abspath(model_path), runs_path,
               in_path, out_path]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise InterpreterError(f"the TFLite interpreter did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            if proc.returncode < 0:
                why = reason = f"crashed with signal {-proc.returncode}"
            else:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                last = lines[-1] if lines else f"exit code {proc.returncode}"
                reason = last if len(last) <= 300 else last[:300] + " ..."
                why = "failed: " + reason
            raise InterpreterError(f"the TFLite interpreter {why} while running the original model "
                                   f"{os.path.basename(model_path)}; it cannot serve as the reference", reason=reason)
        data = np.load(out_path, allow_pickle=False)
        if info is not None and "__kernels__" in data:
            info["kernels"] = str(data["__kernels__"])
        outs = []
        for r in range(len(runs)):
            k = 0
            got = []
            while f"r{r}_o{k}" in data:
                got.append(data[f"r{r}_o{k}"])
                k += 1
            outs.append(got)
        return outs


def reference_outputs(model_path: str, plans: list[IOPlan], feeds: list[list[np.ndarray]] | None, seed: int = 0
                      ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]], list[str]]:
    """Run the original on ``feeds`` (or seeded random inputs): (feeds, outputs, notes).

    Random integer inputs can be out of range for the model (indices, counts). When the interpreter
    rejects them, the run is repeated once with every non-quantized integer input set to 0 (always a
    valid index), and a note says so.

    When the interpreter rejects random inputs whose dynamic dims were fed as 1 (no
    ``--input-shape`` for them), that is a :class:`UsageError` naming those inputs and the flag,
    unless it lacks an op (an unresolved custom or Flex op fails at any shape): the reference is
    missing, not the model's fault.
    """
    notes: list[str] = []
    info: dict[str, str] = {}
    user = feeds is not None
    feeds = feeds if user else [random_inputs(p, seed) for p in plans]

    def run(fs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return run_tflite(model_path, [(p.signature, p.tflite_inputs, p.tflite_outputs, f)
                                       for p, f in zip(plans, fs)], info=info)

    try:
        try:
            refs = run(feeds)
        except InterpreterError as exc:
            int_inputs = [(k, j) for k, p in enumerate(plans) for j, t in enumerate(p.input_tensors)
                          if t.dtype.kind in "iu" and not t.is_quantized]
            if user or not int_inputs:
                raise
            feeds = [list(f) for f in feeds]
            for k, j in int_inputs:
                feeds[k][j] = np.zeros_like(feeds[k][j])
            refs = run(feeds)
            notes.append(f"integer inputs set to 0: the interpreter rejected random ones ({str(exc)[:160]})")
    except InterpreterError as exc:
        usage = None if user or lacks_an_op(str(exc)) else default_shape_error(plans, exc.reason or str(exc))
        if usage is None:
            raise
        raise usage from None
    if info.get("kernels", "").startswith("built-in"):
        notes.append(f"reference from the interpreter's {info['kernels']}")
    return feeds, refs, notes


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


def _lsb_scale(model: ir.Model, sg: ir.Subgraph, t: ir.Tensor) -> float | None:
    """The scale errors of output ``t`` are counted in: its own, or that of the quantized tensor a
    final DEQUANTIZE reads."""
    if t.is_quantized and t.quantization.scale.size == 1:
        return float(t.quantization.scale[0])
    for op in sg.operators:
        if t.index in op.outputs and op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] >= 0:
            src = sg.tensors[op.inputs[0]]
            if src.is_quantized and not src.is_constant and src.quantization.scale.size == 1:
                return float(src.quantization.scale[0])
    return None


def compare_output(signature: str, name: str, ref: np.ndarray, got: np.ndarray, t: ir.Tensor,
                   lsb_scale: float | None, quantized_model: bool, tolerance: float | None) -> OutputCheck:
    ref = np.asarray(ref)
    got = np.asarray(got)
    shape = list(ref.shape)
    if ref.shape != got.shape:
        return OutputCheck(signature, name, shape, str(ref.dtype), float("inf"), float("inf"), 0.0, lsb_scale,
                           None, None, None, f"shape {list(got.shape)} != {shape}", False)
    if ref.dtype.kind in "OSUb" or got.dtype.kind in "OSU":
        eq = float(np.mean(ref == got)) if ref.size else 1.0
        return OutputCheck(signature, name, shape, str(ref.dtype), 0.0 if eq == 1 else 1.0, 0.0, 0.0, None, None,
                           None, eq, "exact", eq == 1.0)
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    diff = np.abs(r - g)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_max = float(np.abs(r).max()) if r.size else 0.0
    rel = diff / np.maximum(np.abs(r), 1e-12)
    max_rel = float(rel.max()) if rel.size else 0.0
    if ref.dtype.kind in "iu" and t.is_quantized:
        lsb = diff
        within1 = float(np.mean(lsb <= 1)) if lsb.size else 1.0
        mx = float(lsb.max()) if lsb.size else 0.0
        ok = within1 >= 0.99 and mx <= 2
        return OutputCheck(signature, name, shape, str(ref.dtype), max_abs, max_rel, ref_max, lsb_scale, mx,
                           within1, None, ">=99% within 1 LSB, none beyond 2", ok)
    if ref.dtype.kind in "iub":
        eq = float(np.mean(ref == got)) if ref.size else 1.0
        need = 0.99 if quantized_model else 1.0
        return OutputCheck(signature, name, shape, str(ref.dtype), max_abs, max_rel, ref_max, None, None, None,
                           eq, f">={need:.0%} equal", eq >= need)
    if lsb_scale and quantized_model and tolerance is None:  # an explicit --tolerance governs float outputs
        lsb = diff / lsb_scale
        within1 = float(np.mean(lsb <= 1.0 + 1e-3)) if lsb.size else 1.0
        mx = float(lsb.max()) if lsb.size else 0.0
        ok = within1 >= 0.99 and mx <= 2.0 + 1e-3
        return OutputCheck(signature, name, shape, str(ref.dtype), max_abs, max_rel, ref_max, lsb_scale, mx,
                           within1, None, ">=99% within 1 LSB, none beyond 2", ok)
    tol = tolerance if tolerance is not None else (MIXED_FLOAT_TOL if quantized_model else FLOAT_TOL)
    bound = tol * max(ref_max, 1e-6)
    ok = bool(np.all(np.isfinite(g) == np.isfinite(r))) and max_abs <= bound
    return OutputCheck(signature, name, shape, str(ref.dtype), max_abs, max_rel, ref_max, None, None, None, None,
                       f"max abs <= {tol:g} x max|ref| = {bound:.3g}", ok)


#: Ops whose dynamic-range (hybrid) kernels quantize their float input on the fly.
HYBRID_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM",
              "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN",
              "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF", "EMBEDDING_LOOKUP", "TRANSPOSE_CONV", "CONV_3D")


def has_hybrid_ops(model: ir.Model) -> bool:
    """Float activations feeding int8/int4 constant weights of an op with a hybrid kernel."""
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.name not in HYBRID_OPS or not op.inputs or op.inputs[0] < 0:
                continue
            x = sg.tensors[op.inputs[0]]
            weights = [sg.tensors[i] for i in op.inputs[1:] if i >= 0]
            if x.type_name == "FLOAT32" and any(w.is_constant and w.type_name in ("INT8", "INT4") for w in weights):
                return True
    return False


def float_tolerance(model: ir.Model) -> tuple[float | None, str | None]:
    """The tolerance for float outputs when the interpreter's own numbers are not float32-exact,
    with the reason; ``(None, None)`` for the default (1e-4 x max|output|).

    - metadata ``reduced_precision_support`` with fp16: the interpreter (XNNPACK) may compute in
      float16, so its outputs carry fp16 error: 1e-2;
    - dynamic-range (hybrid) ops quantize their input on the fly; float noise of 1e-6 can move one
      value across a rounding step of the 8-bit grid, and that step then shows in the output: 5e-2.
    """
    if is_quantized_model(model):
        return None, None
    flags = model.metadata_bytes("reduced_precision_support")
    if flags and b"fp16" in flags:
        return 1e-2, ("the file allows fp16 inference (metadata reduced_precision_support), so the interpreter's "
                      "outputs carry fp16 error: float outputs judged at 1e-2 x max|output|")
    if has_hybrid_ops(model):
        return 5e-2, ("dynamic-range (hybrid) ops quantize their input on the fly, so float noise can move a value "
                      "across an 8-bit rounding step: float outputs judged at 5e-2 x max|output|")
    return None, None


def is_quantized_model(model: ir.Model) -> bool:
    """True when some activation (non-constant tensor) carries quantization parameters."""
    return any(t.is_quantized and not t.is_constant for sg in model.subgraphs for t in sg.tensors)


def format_checks(checks: list[OutputCheck]) -> str:
    """One row per output: the verification table printed by ``convert``."""
    head = ["signature", "output", "shape", "max abs err", "max rel err", "LSB (max, <=1)", "status"]
    rows = []
    for c in checks:
        lsb = "-" if c.max_lsb is None else f"{c.max_lsb:.3g}, {100 * (c.within_1_lsb or 0):.2f}%"
        if c.exact_fraction is not None:
            lsb = f"equal {100 * c.exact_fraction:.2f}%"
        rows.append([c.signature, c.name, "x".join(map(str, c.shape)) or "scalar", f"{c.max_abs_err:.3g}",
                     f"{c.max_rel_err:.3g}", lsb, "ok" if c.passed else f"FAIL ({c.tolerance})"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)
