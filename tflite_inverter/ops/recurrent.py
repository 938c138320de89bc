"""Recurrent ops: LSTM, UNIDIRECTIONAL_SEQUENCE_LSTM, BIDIRECTIONAL_SEQUENCE_LSTM, RNN,
UNIDIRECTIONAL_SEQUENCE_RNN, BIDIRECTIONAL_SEQUENCE_RNN and SVDF.

The state tensors of these ops are TFLite *variable* tensors: the interpreter updates them in place on
every invoke, so a model converted from a "stateless" Keras layer still carries its state from one
call to the next. The rebuilt module does the same: the states are ``ctx.state(i)`` variables, read
at the start of the op and assigned the final state at its end.

The time loop is a ``tf.scan`` (a ``tf.while_loop``) over the time-major sequence, with the input
projections of every time step computed before the loop. TensorFlow has no op the converter fuses
back into these TFLite ops while keeping the state across calls (its Keras-LSTM fusion drops the
final state), so a round trip yields a WHILE loop, not the original single op.

Three numeric forms are rebuilt, chosen the way the TFLite kernels choose them:

* float: float input and float weights (lstm_eval.cc LstmStepFloat, basic_rnn, svdf EvalFloatSVDF).
* hybrid: float input, int8 weights. The kernels quantize every float activation row (input, state,
  hidden) to int8 on the fly before the integer matmul; that rounding is reproduced (per-row
  symmetric, or asymmetric with ``asymmetric_quantize_inputs``).
* full integer (LSTM and UNIDIRECTIONAL_SEQUENCE_LSTM "8x8_16", SVDF int8): emulated bit for bit in
  int64 tensors: the kernel's quantized multipliers and double-rounding rescales, int16 gate
  pre-activations on their intermediate scale (Q3.12 without layer norm), gemmlowp's fixed-point
  int16 logistic/tanh (tabulated once over all 65536 inputs), the int16 cell state with its
  rounding shifts, saturating adds and clip, the int8 hidden state and projection. Only the integer
  layer norm's fixed-point inverse square root is replaced by the exact one. That arithmetic and the LSTM input
  layout live in :mod:`.recurrent_kernels`.

TFLite quirks are reproduced rather than "fixed", since the interpreter is the reference: activation
NONE in a float LSTM multiplies by the cell gate instead of the cell state, the integer projection
path offsets the hidden by twice its zero point, the int8 SVDF accepts only RELU and does not apply
it, batch-major BIDIRECTIONAL_SEQUENCE_RNN feeds its backward cell the input even in "aux replaces
backward input" mode, and its hybrid time-major form repeats both passes max_time times. What
bidirectional_sequence_rnn.cc gets wrong is refused by name instead (its check): aux weights of
another type than the input weights (never type-checked: a hybrid kernel reads float32 ones as int8
with scale 0 and so drops the aux input, a float kernel reads int8 ones past their end), an aux input
narrower or wider than the input where the kernel steps through it with the input's row stride,
and hybrid time-major merged outputs with batch > 1 and symmetric quantization, where it crashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph, Tensor
from .common import FUSED_ACTIVATIONS, apply_activation, round_half_away
from .context import OpContext
from .fixedpoint import mbqm
from .recurrent_kernels import (
    BIDI_AUX_INPUT,
    BIDI_BW,
    BIDI_FW,
    GATES,
    UNI,
    LstmLayout,
    int_lstm_params,
    int_matmul,
    raw,
    run_int,
    saturate,
    scale,
    to_int,
    zero_point,
)
from .registry import register

# -- small shared helpers ----------------------------------------------------------------------------


def _kind(input_t: Tensor | None, weight_t: Tensor | None) -> str:
    """float / hybrid / integer, as the kernels decide it (input type, then weight type)."""
    if input_t is None or weight_t is None:
        return "float"
    if input_t.type_name == "FLOAT32":
        return "hybrid" if weight_t.type_name in ("INT8", "UINT8") else "float"
    return "integer"


def _activation_problems(op: Operator) -> list[str]:
    act = op.options.get("fused_activation_function", "NONE")
    if act not in FUSED_ACTIVATIONS:
        return [f"fused activation {act!r} (the recurrent kernels implement {', '.join(FUSED_ACTIVATIONS)})"]
    return []


def _clip(x: Any, limit: float) -> Any:
    return tf.clip_by_value(x, -limit, limit) if limit > 0 else x


def _time_major(x: Any, time_major: bool) -> Any:
    return x if time_major else tf.transpose(x, [1, 0, 2])


def _transposed(ctx: OpContext, i: int) -> Any:
    """Weight ``[out, in]`` as ``[in, out]`` for ``x @ w`` (constant: transposed once in numpy)."""
    if not ctx.has_input(i):
        return None
    if ctx.is_const(i):
        return ctx.weight(i, lambda a: a.reshape(a.shape[0], -1).T, "T")
    return tf.transpose(ctx.input(i))


def _vector(ctx: OpContext, i: int) -> Any:
    if not ctx.has_input(i):
        return None
    return ctx.weight(i) if ctx.is_const(i) else ctx.input(i)


def _quantize_rows(x: Any, asymmetric: bool) -> Any:
    """The int8 rounding the hybrid kernels apply to a float activation row before an integer matmul
    (tensor_utils::BatchQuantizeFloats), returned as the real values it represents."""
    x64 = tf.cast(x, tf.float64)
    if not asymmetric:
        rng = tf.reduce_max(tf.abs(x64), axis=-1, keepdims=True)
        safe = tf.where(rng > 0, rng, tf.ones_like(rng))
        q = tf.clip_by_value(round_half_away(x64 * tf.cast(tf.cast(127.0 / safe, tf.float32), tf.float64)),
                             -127.0, 127.0)
        return tf.cast(q * (safe / 127.0), x.dtype)
    rmin = tf.minimum(tf.reduce_min(x64, axis=-1, keepdims=True), 0.0)
    rmax = tf.maximum(tf.reduce_max(x64, axis=-1, keepdims=True), 0.0)
    same = tf.equal(rmin, rmax)
    scale = tf.where(same, tf.ones_like(rmin), (rmax - rmin) / 255.0)
    zp_min, zp_max = -128.0 - rmin / scale, 127.0 - rmax / scale
    zp = tf.where(128.0 + tf.abs(rmin / scale) < 127.0 + tf.abs(rmax / scale), zp_min, zp_max)
    zp = tf.clip_by_value(round_half_away(zp), -128.0, 127.0)
    inv = tf.cast(tf.cast(1.0 / scale, tf.float32), tf.float64)
    q = tf.clip_by_value(round_half_away(zp + x64 * inv), -128.0, 127.0)
    return tf.cast(tf.where(same, tf.zeros_like(x64), (q - zp) * scale), x.dtype)


def _layer_norm(x: Any) -> Any:
    """tensor_utils::MeanStddevNormalization (population variance, epsilon 1e-8)."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-8)


def _read_state(ctx: OpContext, i: int, shape: list[Any]) -> Any:
    v = ctx.input(i)
    if v is None:
        raise ctx.unsupported(f"state input {i} is absent")
    return tf.reshape(tf.cast(v, tf.float32), shape)


def _write_state(ctx: OpContext, i: int, value: Any) -> None:
    """Assign the final state to the variable behind input ``i`` (TFLite writes it in place)."""
    t = ctx.in_tensor(i)
    if t is None or not t.is_variable:
        return  # TFLite would refuse a non-variable state; nothing persists
    var = ctx.state(i)
    var.assign(tf.reshape(tf.cast(value, var.dtype), tf.shape(var)))


# -- LSTM: checks ----------------------------------------------------------------------------------
def _state_problems(op: Operator, sg: Subgraph, lay: LstmLayout, x_t: Tensor | None, w_t: Tensor) -> list[str]:
    """The kernels require ``NumElements(output_state) == n_batch * n_output`` and
    ``NumElements(cell_state) == n_batch * n_cell``: states of another size cannot run (a static
    batch only; a dynamic one resizes the state with it)."""
    if x_t is None or len(x_t.shape) not in (2, 3) or not w_t.shape:
        return []
    time_major = bool(op.options.get("time_major", op.name == "BIDIRECTIONAL_SEQUENCE_LSTM"))
    axis = 1 if len(x_t.shape) == 3 and time_major else 0
    if (x_t.shape_signature or x_t.shape)[axis] < 0:
        return []
    batch, n_cell = x_t.shape[axis], w_t.shape[0]
    h_t = sg.input_of(op, lay.h["output"])
    n_out = n_cell if op.options.get("diagonal_recurrent_tensors", False) or h_t is None or not h_t.shape \
        else h_t.shape[-1]
    out = []
    for what, i, n in (("output state", lay.h_state, n_out), ("cell state", lay.c_state, n_cell)):
        t = sg.input_of(op, i)
        if t is not None and t.shape and int(np.prod(t.shape)) != batch * n:
            out.append(f"input {i} ({what}) has shape {list(t.shape)}, but batch {batch} x {n} needs "
                       f"{batch * n} elements")
    return out


def _lstm_problems(op: Operator, sg: Subgraph, layouts: tuple[LstmLayout, ...], integer_ok: bool) -> list[str]:
    problems = _activation_problems(op)
    o = op.options
    for key in ("cell_clip", "proj_clip"):
        if float(o.get(key) or 0.0) < 0:
            problems.append(f"{key} {o.get(key)} is negative (TFLite requires >= 0)")
    for lay in layouts:
        x_t, w_t = sg.input_of(op, 0), sg.input_of(op, lay.x["output"])
        if w_t is None:
            problems.append(f"input {lay.x['output']} (input-to-output weights) is absent")
            continue
        problems += _state_problems(op, sg, lay, x_t, w_t)
        kind = _kind(x_t, w_t)
        if kind == "integer":
            if not integer_ok:
                problems.append(f"{x_t.type_name} input: this op has no integer kernel in TFLite")
            elif x_t.type_name != "INT8" or w_t.type_name != "INT8":
                problems.append(f"integer LSTM with {x_t.type_name} input and {w_t.type_name} weights (only the "
                                "int8 8x8_16 kernel is rebuilt)")
            elif len(op.intermediates) != 5:
                problems.append(f"integer LSTM with {len(op.intermediates)} intermediates (only the 8x8_16 "
                                "kernel with 5 is rebuilt; 12 selects TFLite's 8x8_8 kernel)")
            else:
                c_t = sg.input_of(op, lay.c_state)
                if c_t is None or not c_t.is_quantized or c_t.type_name != "INT16":
                    problems.append("integer LSTM whose cell state is not a quantized int16 tensor")
                else:
                    e = math.log2(scale(c_t))
                    if e != int(e) or e > -9:
                        problems.append(f"cell state scale {scale(c_t)} is not a power of two <= 2^-9")
        elif x_t is not None and x_t.type_name != "FLOAT32":
            problems.append(f"input type {x_t.type_name}")
    return problems


def _lstm_check(op: Operator, sg: Subgraph) -> list[str]:
    if op.options.get("kernel_type", "FULL") != "FULL":
        return [f"kernel_type {op.options.get('kernel_type')} (the 5-input BASIC quantized LSTM cell is not "
                "rebuilt; only the FULL kernel)"]
    if len(op.inputs) not in (20, 24):
        return [f"{len(op.inputs)} inputs (the FULL kernel takes 20 or 24)"]
    return _lstm_problems(op, sg, (UNI,), integer_ok=True)


def _uni_lstm_check(op: Operator, sg: Subgraph) -> list[str]:
    if len(op.inputs) not in (20, 24):
        return [f"{len(op.inputs)} inputs (UNIDIRECTIONAL_SEQUENCE_LSTM takes 20 or 24)"]
    return _lstm_problems(op, sg, (UNI,), integer_ok=True)


def _bidi_lstm_check(op: Operator, sg: Subgraph) -> list[str]:
    if len(op.inputs) != 48:
        return [f"{len(op.inputs)} inputs (BIDIRECTIONAL_SEQUENCE_LSTM takes 48)"]
    return _lstm_problems(op, sg, (BIDI_FW, BIDI_BW), integer_ok=False)


# -- LSTM: float and hybrid ---------------------------------------------------------------------------
@dataclass
class FloatLstm:
    """One direction's weights in the real domain, laid out for ``x @ w``."""

    wx: dict[str, Any]
    wa: dict[str, Any]
    wh: dict[str, Any]
    diagonal: bool
    peephole: dict[str, Any]
    bias: dict[str, Any]
    ln: dict[str, Any]
    proj_w: Any
    proj_b: Any
    activation: str
    cell_clip: float
    proj_clip: float
    hybrid: bool
    asymmetric: bool
    where: str

    @property
    def cifg(self) -> bool:
        return self.wx.get("input") is None

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[1:] if self.cifg else GATES


def _float_lstm(ctx: OpContext, lay: LstmLayout) -> FloatLstm:
    o = ctx.options
    present = [i for i in range(ctx.num_inputs) if ctx.has_input(i)]

    def get(idx: dict[str, int], fn: Any) -> dict[str, Any]:
        return {g: fn(ctx, i) for g, i in idx.items() if i in present}

    diagonal = bool(o.get("diagonal_recurrent_tensors", False))
    p = FloatLstm(
        wx=get(lay.x, _transposed), wa=get(lay.aux, _transposed),
        wh=get(lay.h, _vector if diagonal else _transposed), diagonal=diagonal,
        peephole=get(lay.peephole, _vector), bias=get(lay.bias, _vector),
        ln=get({g: i for g, i in lay.layer_norm.items() if i < ctx.num_inputs}, _vector),
        proj_w=_transposed(ctx, lay.proj_w), proj_b=_vector(ctx, lay.proj_b),
        activation=o.get("fused_activation_function", "TANH"), cell_clip=float(o.get("cell_clip") or 0.0),
        proj_clip=float(o.get("proj_clip") or 0.0), hybrid=_kind(ctx.in_tensor(0), ctx.in_tensor(lay.x["output"]))
        == "hybrid", asymmetric=bool(o.get("asymmetric_quantize_inputs", False)), where=ctx.where)
    if p.cifg != (p.wh.get("input") is None):
        raise ctx.unsupported("input-gate weights must be all present or all absent (CIFG)")
    if p.cifg and "input" in p.bias:
        p.bias.pop("input")  # TFLite rejects it; a CIFG input gate has no bias
    return p


def _q(p: FloatLstm, x: Any) -> Any:
    return _quantize_rows(x, p.asymmetric) if p.hybrid else x


def _input_terms(p: FloatLstm, xs: Any, aux: Any) -> dict[str, Any]:
    """Per-gate input projections (+ bias when there is no layer norm) for all time steps at once."""
    xq = _q(p, xs)
    aq = _q(p, aux) if aux is not None else None
    out = {}
    for g in p.gates:
        z = tf.tensordot(xq, p.wx[g], axes=1)
        if aq is not None and g in p.wa:
            z = z + tf.tensordot(aq, p.wa[g], axes=1)
        if not p.ln and g in p.bias:
            z = z + p.bias[g]
        out[g] = z
    return out


def _float_step(p: FloatLstm, xg: dict[str, Any], h: Any, c: Any) -> tuple[Any, Any]:
    """One LstmStepFloat / hybrid step for a batch: returns (output = new h, new c)."""
    hq = _q(p, h)

    def pre(g: str, cell: Any) -> Any:
        z = xg[g] + (hq * p.wh[g] if p.diagonal else tf.matmul(hq, p.wh[g]))
        if cell is not None and g in p.peephole:
            z = z + p.peephole[g] * cell
        if p.ln:
            z = _layer_norm(z) * p.ln[g]
            if g in p.bias:
                z = z + p.bias[g]
        return z

    act = lambda v: apply_activation(v, p.activation, p.where)  # noqa: E731
    f = tf.sigmoid(pre("forget", c))
    g_ = act(pre("cell", None))
    i = 1.0 - f if p.cifg else tf.sigmoid(pre("input", c))
    c_new = _clip(f * c + i * g_, p.cell_clip)
    o = tf.sigmoid(pre("output", c_new))
    # ApplyActivationToVector(cell_state, .., kTfLiteActNone, scratch) returns without writing its
    # output, so with activation NONE TFLite multiplies the output gate by the cell *gate* left in
    # that scratch buffer, not by the cell state. Reproduced as is.
    hidden = o * (g_ if p.activation == "NONE" else act(c_new))
    if p.proj_w is None:
        return hidden, c_new
    out = tf.matmul(_q(p, hidden), p.proj_w)
    if p.proj_b is not None:
        out = out + p.proj_b
    return _clip(out, p.proj_clip), c_new


def _run_float(p: FloatLstm, xs: Any, aux: Any, h0: Any, c0: Any, reverse: bool) -> tuple[Any, Any, Any]:
    """Scan a time-major sequence; returns (outputs [T, B, n_out], final h, final c)."""
    terms = _input_terms(p, xs, aux)
    names = list(terms)

    def step(carry: Any, elems: Any) -> Any:
        h, c = carry
        return _float_step(p, dict(zip(names, elems)), h, c)

    hs, cs = tf.scan(step, tuple(terms[g] for g in names), initializer=(h0, c0), reverse=reverse)
    last = 0 if reverse else -1
    return hs, hs[last], cs[last]


# -- LSTM: full integer (8x8_16) -------------------------------------------------------------------
# -- LSTM: rebuilders ------------------------------------------------------------------------------
def _lstm_direction(ctx: OpContext, lay: LstmLayout, xs: Any, aux: Any, reverse: bool) -> Any:
    """Run one direction over time-major ``xs`` ([T, B, in]); updates its state variables."""
    w_t, h_t = ctx.in_tensor(lay.x["output"]), ctx.in_tensor(lay.h["output"])
    n_cell = w_t.shape[0]
    n_out = n_cell if ctx.options.get("diagonal_recurrent_tensors", False) else h_t.shape[-1]
    h0 = _read_state(ctx, lay.h_state, [-1, n_out])
    c0 = _read_state(ctx, lay.c_state, [-1, n_cell])
    if _kind(ctx.in_tensor(0), w_t) == "integer":
        ys, h, c = run_int(ctx, int_lstm_params(ctx, lay), lay, xs, h0, c0, reverse)
    else:
        ys, h, c = _run_float(_float_lstm(ctx, lay), xs, aux, h0, c0, reverse)
    _write_state(ctx, lay.h_state, h)
    _write_state(ctx, lay.c_state, c)
    return ys


@register("UNIDIRECTIONAL_SEQUENCE_LSTM", check=_uni_lstm_check)
def unidirectional_sequence_lstm(ctx: OpContext) -> list[Any]:
    """An LSTM over a [batch, time, in] (or time-major) sequence; output [.., time, n_output]."""
    tm = bool(ctx.options.get("time_major", False))
    x = ctx.input(0)
    if x.shape.rank != 3:
        raise ctx.unsupported(f"input of rank {x.shape.rank} (the kernel takes rank 3)")
    ys = _lstm_direction(ctx, UNI, _time_major(x, tm), None, False)
    return [_time_major(ys, tm)]


@register("LSTM", check=_lstm_check)
def lstm(ctx: OpContext) -> list[Any]:
    """One LSTM step on [batch, in] (the FULL kernel); the state variables carry it to the next call."""
    x = ctx.input(0)
    if x.shape.rank != 2:
        raise ctx.unsupported(f"input of rank {x.shape.rank} (the FULL kernel takes [batch, input])")
    if ctx.num_outputs != 1:
        raise ctx.unsupported(f"{ctx.num_outputs} outputs (the FULL kernel has 1)")
    return [_lstm_direction(ctx, UNI, x[None], None, False)[0]]


def _bidi_inputs(ctx: OpContext, time_major_default: bool, aux_index: int) -> tuple[bool, bool, Any, Any]:
    """The options and sequence inputs both bidirectional ops share: ``time_major`` (the two ops'
    defaults differ), ``merge_outputs`` (one output, else two), the input and the optional aux input,
    both time-major."""
    tm = bool(ctx.options.get("time_major", time_major_default))
    merge = bool(ctx.options.get("merge_outputs", False))
    if ctx.num_outputs != (1 if merge else 2):
        raise ctx.unsupported(f"{ctx.num_outputs} outputs with merge_outputs={merge}")
    aux = _time_major(ctx.input(aux_index), tm) if ctx.has_input(aux_index) else None
    return tm, merge, _time_major(ctx.input(0), tm), aux


@register("BIDIRECTIONAL_SEQUENCE_LSTM", check=_bidi_lstm_check)
def bidirectional_sequence_lstm(ctx: OpContext) -> list[Any]:
    """Forward and backward LSTMs over the sequence (the backward one's outputs stay aligned with the
    input time steps); ``merge_outputs`` concatenates them on the last axis in output 0.

    With an aux input but no aux weights, the backward LSTM reads the aux input instead of the input
    (stacking without cross links); with aux weights both directions add the aux projection.
    """
    tm, merge, x, aux = _bidi_inputs(ctx, True, BIDI_AUX_INPUT)
    use_aux_weights = ctx.has_input(BIDI_FW.aux["forget"])
    bw_x = aux if aux is not None and not use_aux_weights else x
    real_aux = aux if use_aux_weights else None
    fw = _lstm_direction(ctx, BIDI_FW, x, real_aux, False)
    bw = _lstm_direction(ctx, BIDI_BW, bw_x, real_aux, True)
    if merge:
        return [_time_major(tf.concat([fw, bw], axis=-1), tm)]
    return [_time_major(fw, tm), _time_major(bw, tm)]


# -- RNN ------------------------------------------------------------------------------------------------
@dataclass
class FloatRnn:
    w: Any
    r: Any
    b: Any
    aux_w: Any
    activation: str
    hybrid: bool
    asymmetric: bool
    where: str


def _rnn_params(ctx: OpContext, w: int, r: int, b: int, aux_w: int | None = None) -> FloatRnn:
    return FloatRnn(w=_transposed(ctx, w), r=_transposed(ctx, r), b=_vector(ctx, b),
                    aux_w=_transposed(ctx, aux_w) if aux_w is not None else None,
                    activation=ctx.options.get("fused_activation_function", "NONE"),
                    hybrid=_kind(ctx.in_tensor(0), ctx.in_tensor(w)) == "hybrid",
                    asymmetric=bool(ctx.options.get("asymmetric_quantize_inputs", False)), where=ctx.where)


def _run_rnn(p: FloatRnn, xs: Any, aux: Any, h0: Any, reverse: bool) -> tuple[Any, Any]:
    """h_t = act(W x_t + W_aux aux_t + R h_{t-1} + b) over a time-major sequence (RnnBatchStep)."""
    q = (lambda v: _quantize_rows(v, p.asymmetric)) if p.hybrid else (lambda v: v)
    terms = tf.tensordot(q(xs), p.w, axes=1)
    if aux is not None and p.aux_w is not None:
        terms = terms + tf.tensordot(q(aux), p.aux_w, axes=1)
    if p.b is not None:
        terms = terms + p.b

    def step(h: Any, z: Any) -> Any:
        return apply_activation(z + tf.matmul(q(h), p.r), p.activation, p.where)

    hs = tf.scan(step, terms, initializer=h0, reverse=reverse)
    return hs, hs[0 if reverse else -1]


def _rnn_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _activation_problems(op)
    x_t = sg.input_of(op, 0)
    if x_t is not None and x_t.type_name != "FLOAT32":
        problems.append(f"input type {x_t.type_name} (TFLite's RNN kernels are float or hybrid only)")
    return problems


def _birnn_check(op: Operator, sg: Subgraph) -> list[str]:
    """What bidirectional_sequence_rnn.cc computes wrongly or crashes on (refused by name: the
    interpreter's result there is not the op's meaning, and no rebuild can be checked against it)."""
    problems = _rnn_check(op, sg)
    x_t, fw_w = sg.input_of(op, 0), sg.input_of(op, 1)
    aux, fw_aux, bw_aux = (sg.input_of(op, i) for i in (9, 10, 11))
    if x_t is None or fw_w is None:
        return problems
    hybrid = _kind(x_t, fw_w) == "hybrid"
    if (fw_aux is None) != (bw_aux is None):
        problems.append("only one of the fw/bw aux weights (inputs 10/11) is given; TFLite needs both or neither")
    for name, t in (("fw", fw_aux), ("bw", bw_aux)):
        if t is not None and t.type_name != fw_w.type_name:
            if hybrid:
                why = ("the hybrid kernel reads them as int8 with their (absent) scale 0, so the interpreter "
                       "silently drops the aux input's contribution")
            else:
                why = "the float kernel reads them as float32, past the end of their buffer"
            problems.append(f"{name} aux weights are {t.type_name} but the input weights {fw_w.type_name}: {why}")
    time_major = bool(op.options.get("time_major", False))
    # The aux rows are read with the input's stride: time-major always (also as the backward input
    # without aux weights), batch-major in the hybrid kernel (batch-major float reads them right, and
    # without aux weights its backward cell reads the input anyway).
    if aux is not None and len(aux.shape) == 3 and len(x_t.shape) == 3 and aux.shape[2] != x_t.shape[2] \
            and (time_major or (hybrid and fw_aux is not None)):
        problems.append(f"aux input width {aux.shape[2]} differs from the input width {x_t.shape[2]}: TFLite's "
                        f"{'hybrid' if hybrid else 'time-major'} kernel steps through the aux input with the "
                        "input's row stride (wrong rows, past its end)")
    batch = x_t.shape[1] if time_major and len(x_t.shape) == 3 else 1
    if (hybrid and time_major and op.options.get("merge_outputs") and batch != 1
            and not op.options.get("asymmetric_quantize_inputs")):
        problems.append("hybrid time-major merge_outputs with batch > 1 and symmetric input quantization: the "
                        "interpreter crashes (its unrolled RnnBatchStep offsets the null zero_points pointer by "
                        "the batch row and reads through it)")
    return problems


def _rnn_direction(ctx: OpContext, xs: Any, aux: Any, w: int, r: int, b: int, state: int, aux_w: int | None,
                   reverse: bool) -> Any:
    units = ctx.in_tensor(w).shape[0]
    h0 = _read_state(ctx, state, [-1, units])
    hs, h = _run_rnn(_rnn_params(ctx, w, r, b, aux_w), xs, aux, h0, reverse)
    _write_state(ctx, state, h)
    return hs


@register("RNN", check=_rnn_check)
def rnn(ctx: OpContext) -> list[Any]:
    """One step h = act(W x + R h + b) on [batch, in]; inputs: x, W, R, b, hidden state."""
    return [_rnn_direction(ctx, ctx.input(0)[None], None, 1, 2, 3, 4, None, False)[0]]


@register("UNIDIRECTIONAL_SEQUENCE_RNN", check=_rnn_check)
def unidirectional_sequence_rnn(ctx: OpContext) -> list[Any]:
    tm = bool(ctx.options.get("time_major", False))
    hs = _rnn_direction(ctx, _time_major(ctx.input(0), tm), None, 1, 2, 3, 4, None, False)
    return [_time_major(hs, tm)]


@register("BIDIRECTIONAL_SEQUENCE_RNN", check=_birnn_check)
def bidirectional_sequence_rnn(ctx: OpContext) -> list[Any]:
    """Inputs: x, fw W/R/b/state (1-4), bw W/R/b/state (5-8), aux input (9), fw/bw aux weights
    (10/11); the aux rules are those of BIDIRECTIONAL_SEQUENCE_LSTM."""
    tm, merge, x, aux = _bidi_inputs(ctx, False, 9)
    use_aux_weights = ctx.has_input(10)
    # Without aux weights the aux input replaces the backward input, but TFLite's batch-major loops
    # read ``input`` for the backward cell regardless; reproduced.
    bw_x = aux if aux is not None and not use_aux_weights and tm else x
    real_aux = aux if use_aux_weights else None
    passes = 1
    if tm and _kind(ctx.in_tensor(0), ctx.in_tensor(1)) == "hybrid":
        # The hybrid time-major kernel nests both passes in an extra loop over time: they run
        # max_time times, each starting from the state the previous one left.
        passes = ctx.in_tensor(0).shape[0]
        if passes <= 0:
            raise ctx.unsupported("hybrid time-major BIDIRECTIONAL_SEQUENCE_RNN with a dynamic time dimension")
    for _ in range(passes):
        fw = _rnn_direction(ctx, x, real_aux, 1, 2, 3, 4, 10 if use_aux_weights else None, False)
        bw = _rnn_direction(ctx, bw_x, real_aux, 5, 6, 7, 8, 11 if use_aux_weights else None, True)
    if merge:
        return [_time_major(tf.concat([fw, bw], axis=-1), tm)]
    return [_time_major(fw, tm), _time_major(bw, tm)]


# -- SVDF ------------------------------------------------------------------------------------------------
def _svdf_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _activation_problems(op)
    rank = int(op.options.get("rank") or 0)
    wf = sg.input_of(op, 1)
    if rank <= 0:
        problems.append(f"rank {rank} (must be >= 1)")
    elif wf is not None and wf.shape and wf.shape[0] % rank:
        problems.append(f"rank {rank} does not divide the {wf.shape[0]} filters")
    x_t = sg.input_of(op, 0)
    if x_t is not None and x_t.type_name not in ("FLOAT32", "INT8"):
        problems.append(f"input type {x_t.type_name}")
    if x_t is not None and x_t.type_name == "INT8":
        act = op.options.get("fused_activation_function", "NONE")
        if act != "RELU":
            problems.append(f"int8 SVDF with fused activation {act} (TFLite's int8 kernel accepts only RELU, "
                            "and the interpreter refuses the model)")
        narrow = [i for i in (2, 4) if (t := sg.input_of(op, i)) is not None and t.type_name == "INT8"]
        if narrow:
            # TFLite's kernel never checks these types: it reads the time weights and the state as
            # int16 (GetTensorData<int16_t>), i.e. twice their byte size, past the end of both
            # buffers, and writes the shifted "int16" state past the variable into the arena. The
            # stock interpreter's results are then memory garbage (saturated, input-independent
            # outputs, at times heap corruption), which no rebuild can reproduce.
            names = {2: "weights_time (input 2)", 4: "state (input 4)"}
            problems.append(f"int8 SVDF with int8 {' and '.join(names[i] for i in narrow)}: "
                            "TFLite's int8 kernel reads them as int16 regardless of their type, past the end "
                            "of their buffers (the stock interpreter's outputs are undefined memory garbage)")
        for i, want in ((1, "INT8"), (2, "INT16"), (4, "INT16")):
            if i in narrow:
                continue
            t = sg.input_of(op, i)
            if t is None or t.type_name != want or not t.is_quantized:
                problems.append(f"int8 SVDF input {i} must be quantized {want}")
    wt, st = sg.input_of(op, 2), sg.input_of(op, 4)
    if wf is not None and wt is not None and st is not None and len(wt.shape) == 2 and len(st.shape) == 2:
        want_cols = wf.shape[0] * wt.shape[1]
        if st.shape[1] != want_cols:
            problems.append(f"state tensor has shape {list(st.shape)}, TFLite requires [batch, memory_size * "
                            f"num_filters] = [{st.shape[0]}, {want_cols}] (the interpreter refuses this model too)")
    return problems


@register("SVDF", check=_svdf_check)
def svdf(ctx: OpContext) -> list[Any]:
    """Rank-``rank`` SVDF: the state [batch, filters * memory] shifts left by one, the feature
    projection of the input enters at the newest position, each filter's memory is weighted by its
    time weights, ``rank`` filters are summed per unit, bias and activation follow.

    The int8 kernel (reference_ops::EvalIntegerSVDF) keeps the state in int16 and rescales the int32
    sum to the int8 output without applying the fused activation; that is reproduced as is.
    """
    rank = int(ctx.options["rank"])
    x_t, wf_t, wt_t = ctx.in_tensor(0), ctx.in_tensor(1), ctx.in_tensor(2)
    filters, memory = wf_t.shape[0], wt_t.shape[1]
    units = filters // rank
    x = ctx.input(0)
    kind = _kind(x_t, wf_t)
    if kind == "integer":
        s_t, out_t = ctx.in_tensor(4), ctx.out_tensor(0)
        s_x, s_s, s_wt, s_out = scale(x_t), scale(s_t), scale(wt_t), scale(out_t)
        xi = to_int(x, s_x, 0)  # the int8 input minus its zero point
        feat = saturate(mbqm(int_matmul(xi, tf.transpose(raw(ctx, 1, np.float64))), s_x * scale(wf_t) / s_s), 16)
        state = tf.reshape(to_int(ctx.input(4), s_s, 0), [-1, filters, memory])
        new = tf.concat([state[:, :, 1:], feat[:, :, None]], axis=-1)
        acc = tf.reduce_sum(tf.reshape(tf.reduce_sum(new * raw(ctx, 2), axis=-1), [-1, units, rank]), axis=-1)
        if ctx.has_input(3):
            acc = acc + raw(ctx, 3)
        zp = int(zero_point(out_t))
        out = saturate(mbqm(acc, s_s * s_wt / s_out) + zp, 8)
        _write_state(ctx, 4, tf.cast(tf.reshape(new, [-1, filters * memory]), tf.float64) * s_s)
        return [tf.cast(tf.cast(out - zp, tf.float64) * s_out, tf.float32)]
    wf = _transposed(ctx, 1)
    wt = ctx.weight(2) if ctx.is_const(2) else ctx.input(2)
    xq = _quantize_rows(x, bool(ctx.options.get("asymmetric_quantize_inputs", False))) if kind == "hybrid" else x
    feat = tf.matmul(xq, wf)
    state = _read_state(ctx, 4, [-1, filters, memory])
    new = tf.concat([state[:, :, 1:], feat[:, :, None]], axis=-1)
    out = tf.reduce_sum(tf.reshape(tf.reduce_sum(new * wt, axis=-1), [-1, units, rank]), axis=-1)
    if ctx.has_input(3):
        out = out + _vector(ctx, 3)
    _write_state(ctx, 4, tf.reshape(new, [-1, filters * memory]))
    return [ctx.activation(out)]
