"""The reference run: the original model in the TFLite interpreter child (:mod:`._interp_child`,
:func:`run_tflite`) or the TFLite Micro child (:mod:`._micro_child`, :func:`run_micro`), through one
child runner (:func:`_run_child`) so a crash ends in a clear message. :func:`reference_outputs`
runs every plan with both interpreter kernel sets (default/XNNPACK and
``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), lowers rejected rule-bound inputs (weak verification) and
picks the reference (:func:`select_reference`, :func:`stock_misreads`). See :mod:`.rules` for the
contract.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from ..errors import InterpreterError, UsageError
from ..model import ir
from ..model.input_shapes import dynamic_dims_error
from .plan import IOPlan, random_inputs


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


def run_all_tensors(model_path: str, feeds: list[list[tuple[int, np.ndarray]]], read: list[int],
                    timeout: float = 600.0) -> list[dict[int, np.ndarray]]:
    """Run subgraph 0 of the model once per feed in the interpreter child, keeping every intermediate
    tensor (``experimental_preserve_all_tensors``, default kernels); one ``{tensor index: value}`` per
    feed. A feed is ``(input tensor index, array)`` pairs; an array of another shape than the stored
    one resizes that input. A tensor of ``read`` that the interpreter freed or never allocated is left
    out of the dict."""
    specs = [{"tensor_inputs": [int(i) for i, _ in feed], "extra": [int(i) for i in read]} for feed in feeds]
    outs = _run_child("tflite_inverter.conversion._interp_child", "the TFLite interpreter", model_path, specs,
                      [[a for _, a in feed] for feed in feeds], timeout, None, ["--all-tensors"])
    return [{i: v for i, v in zip(read, got) if v is not None} for got in outs]


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
            got: list[np.ndarray | None] = []
            while f"r{r}_o{k}" in data or f"r{r}_o{k}_absent" in data:  # absent: a freed tensor (--all-tensors)
                got.append(data[f"r{r}_o{k}"] if f"r{r}_o{k}" in data else None)
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
