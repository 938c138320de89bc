"""What the recurrent ops share below their rebuilders (:mod:`.recurrent`): the LSTM kernels' input
layout (lstm_shared.h; bidirectional_sequence_lstm.cc) and the full-integer arithmetic: the 8x8_16 LSTM
step (lstm_eval.cc ``LstmStepInteger8x8_16``, parameters from lstm.cc ``PopulateQuantizedLstmParams8x8_16``)
emulated bit for bit on int64 tensors, and the integer helpers the int8 SVDF uses too.

The 8x8_16 scheme: int16 gate pre-activations on their intermediate scale (Q3.12 without layer norm),
gemmlowp's fixed-point int16 logistic/tanh (:func:`.fixedpoint.q15_table`), the int16 cell state with its
rounding shifts, saturating adds and clip, the int8 hidden state and projection. Only the integer layer
norm's fixed-point inverse square root is replaced by the exact one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Tensor
from .common import round_half_away
from .context import OpContext
from .fixedpoint import mbqm, q15_table, rounding_divide_by_pot

GATES = ("input", "forget", "cell", "output")


@dataclass(frozen=True)
class LstmLayout:
    """Input indices of one LSTM direction (lstm_shared.h; bidirectional_sequence_lstm.cc)."""

    x: dict[str, int]
    h: dict[str, int]
    peephole: dict[str, int]
    bias: dict[str, int]
    proj_w: int
    proj_b: int
    h_state: int
    c_state: int
    layer_norm: dict[str, int] = field(default_factory=dict)
    aux: dict[str, int] = field(default_factory=dict)


UNI = LstmLayout(
    x={"input": 1, "forget": 2, "cell": 3, "output": 4}, h={"input": 5, "forget": 6, "cell": 7, "output": 8},
    peephole={"input": 9, "forget": 10, "output": 11}, bias={"input": 12, "forget": 13, "cell": 14, "output": 15},
    proj_w=16, proj_b=17, h_state=18, c_state=19, layer_norm={"input": 20, "forget": 21, "cell": 22, "output": 23})
BIDI_FW = LstmLayout(
    x=UNI.x, h=UNI.h, peephole=UNI.peephole, bias=UNI.bias, proj_w=16, proj_b=17, h_state=35, c_state=36,
    aux={"input": 40, "forget": 41, "cell": 42, "output": 43})
BIDI_BW = LstmLayout(
    x={g: i + 17 for g, i in UNI.x.items()}, h={g: i + 17 for g, i in UNI.h.items()},
    peephole={g: i + 17 for g, i in UNI.peephole.items()}, bias={g: i + 17 for g, i in UNI.bias.items()},
    proj_w=33, proj_b=34, h_state=37, c_state=38, aux={"input": 44, "forget": 45, "cell": 46, "output": 47})
BIDI_AUX_INPUT = 39



def scale(t: Tensor) -> float:
    return float(t.quantization.scale[0])


def zero_point(t: Tensor) -> float:
    return float(t.quantization.zero_point[0]) if t.quantization.zero_point.size else 0.0


# -- LSTM: full integer (8x8_16) -------------------------------------------------------------------
def saturate(x: Any, bits: int) -> Any:
    return tf.clip_by_value(x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def int_matmul(a: Any, w: Any) -> Any:
    """Exact integer matmul (float64 sums of int8 x int8 products stay far below 2^53)."""
    return tf.cast(tf.tensordot(tf.cast(a, tf.float64), w, axes=1), tf.int64)


def to_int(x: Any, scale: float, zp: float) -> Any:
    """Real values on a quantization grid back to their stored integers."""
    return tf.cast(round_half_away(tf.cast(x, tf.float64) / scale), tf.int64) + int(zp)


@dataclass
class IntLstm:
    """The integer kernel's parameters: raw integer weights, multipliers and zero points."""

    wx: dict[str, Any]  # int8 weights as float64, [in, cell]
    wh: dict[str, Any]  # [out, cell]
    bias: dict[str, Any]  # int32 biases (int64)
    x_mult: dict[str, float]
    h_mult: dict[str, float]
    peephole: dict[str, Any]  # int16 weights (int64)
    peephole_mult: dict[str, float]
    ln_w: dict[str, Any]  # int16 layer-norm weights (int64)
    ln_scale: dict[str, float]
    x_zp: int
    h_zp: int  # the output state's zero point (the state holds the output's int8 values)
    cell_scale_exp: int
    cell_clip: int  # in cell-state integer units, 0 = none
    hidden_mult: float
    hidden_zp: int
    proj_w: Any
    proj_b: Any
    proj_mult: float
    proj_clip: int  # in output integer units, 0 = none

    @property
    def cifg(self) -> bool:
        return "input" not in self.wx

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[1:] if self.cifg else GATES


def raw(ctx: OpContext, i: int, dtype: Any = np.int64) -> Any:
    """A constant input's stored integers (the kernels use them as they are, whatever their scale)."""
    t = ctx.in_tensor(i)
    if t is None:
        return None
    if not t.is_constant:
        raise ctx.unsupported(f"input {i} of an integer kernel must be a constant")
    return tf.constant(np.asarray(t.data(), dtype=dtype))


def int_lstm_params(ctx: OpContext, lay: LstmLayout) -> IntLstm:
    """The parameters PopulateQuantizedLstmParams8x8_16 derives from the tensors' scales."""
    o = ctx.options
    sg, op = ctx.subgraph, ctx.op
    x_t, h_t, c_t = ctx.in_tensor(0), ctx.in_tensor(lay.h_state), ctx.in_tensor(lay.c_state)
    inter = [sg.tensors[i] for i in op.intermediates]
    use_ln = lay.layer_norm.get("forget", 99) < ctx.num_inputs and ctx.has_input(lay.layer_norm["forget"])
    gate_scale = {}
    for k, g in enumerate(GATES):
        if use_ln:
            if not inter[k].is_quantized:
                raise ctx.unsupported(f"layer-norm LSTM intermediate {k} has no quantization scale")
            gate_scale[g] = scale(inter[k])
        else:
            gate_scale[g] = 2.0 ** -12  # Q3.12, the activations' input format
    hidden_t = inter[4]
    if not hidden_t.is_quantized:
        raise ctx.unsupported("the hidden-state intermediate (4) has no quantization scale")
    s_x, s_h, s_hidden = scale(x_t), scale(h_t), scale(hidden_t)
    cell_exp = int(round(math.log2(scale(c_t))))
    p = IntLstm(wx={}, wh={}, bias={}, x_mult={}, h_mult={}, peephole={}, peephole_mult={}, ln_w={}, ln_scale={},
                x_zp=int(zero_point(x_t)), h_zp=int(zero_point(h_t)), cell_scale_exp=cell_exp, cell_clip=0,
                hidden_mult=2.0 ** -30 / s_hidden, hidden_zp=int(zero_point(hidden_t)), proj_w=None, proj_b=None,
                proj_mult=1.0, proj_clip=0)
    cell_clip, proj_clip = float(o.get("cell_clip") or 0.0), float(o.get("proj_clip") or 0.0)
    if cell_clip > 0:
        p.cell_clip = int(min(max(cell_clip / scale(c_t), -32768.0), 32767.0))
    if proj_clip > 0:
        p.proj_clip = int(min(max(proj_clip / s_h, -128.0), 127.0))
    for g in GATES:
        if not ctx.has_input(lay.x[g]):
            continue
        p.wx[g] = tf.transpose(raw(ctx, lay.x[g], np.float64))
        p.wh[g] = tf.transpose(raw(ctx, lay.h[g], np.float64))
        p.x_mult[g] = scale(ctx.in_tensor(lay.x[g])) * s_x / gate_scale[g]
        p.h_mult[g] = scale(ctx.in_tensor(lay.h[g])) * s_h / gate_scale[g]
        if ctx.has_input(lay.bias[g]):
            p.bias[g] = raw(ctx, lay.bias[g])
        if g in lay.peephole and ctx.has_input(lay.peephole[g]):
            p.peephole[g] = raw(ctx, lay.peephole[g])
            p.peephole_mult[g] = 2.0 ** cell_exp * scale(ctx.in_tensor(lay.peephole[g])) / gate_scale[g]
        if use_ln and ctx.has_input(lay.layer_norm[g]):
            p.ln_w[g] = raw(ctx, lay.layer_norm[g])
            p.ln_scale[g] = scale(ctx.in_tensor(lay.layer_norm[g]))
    if ctx.has_input(lay.proj_w):
        p.proj_w = tf.transpose(raw(ctx, lay.proj_w, np.float64))
        p.proj_b = raw(ctx, lay.proj_b)
        p.proj_mult = scale(ctx.in_tensor(lay.proj_w)) * s_hidden / s_h
    return p


def _int_layer_norm(q: Any, w: Any, bias: Any, w_scale: float) -> Any:
    """tensor_utils::ApplyLayerNorm: the normalized gate on a 2^-10 grid, times the int16 weights
    plus the int32 bias, rescaled to Q3.12. The kernel's fixed-point inverse square root is replaced
    by the exact one (equal but for rounding)."""
    n = int(q.shape[-1])
    total = tf.reduce_sum(q, axis=-1, keepdims=True)
    mean = tf.truncatediv(total * 1024, n)
    variance = tf.reduce_sum(q * q, axis=-1, keepdims=True) * ((1 << 20) // n) - mean * mean
    variance = tf.truncatediv(variance, 1 << 20)
    variance = tf.where(variance < 1, tf.ones_like(variance) * max(1, int(10000 * w_scale)), variance)
    shifted = tf.cast(1024 * q - mean, tf.float64)
    rescaled = tf.cast(round_half_away(shifted * tf.math.rsqrt(tf.cast(variance, tf.float64))), tf.int64)
    val3 = rescaled * w + (bias if bias is not None else 0)
    val4 = tf.truncatediv(val3 + tf.where(val3 > 0, tf.constant(512, tf.int64), -512), 1024)
    return saturate(mbqm(val4, w_scale * 4096.0), 16)


def _q15(fn: str, q: Any, ibits: int) -> Any:
    """gemmlowp ``fn`` of int16 ``q`` read as Q(ibits).(15 - ibits), as Q0.15 integers (a table lookup)."""
    table = tf.constant(q15_table(fn, ibits).astype(np.int64))
    return tf.gather(table, tf.cast(q, tf.int32) + 32768)


def _int_step(p: IntLstm, xg: dict[str, Any], h: Any, c: Any) -> tuple[Any, Any]:
    """One LstmStepInteger8x8_16 step on int64 tensors. ``xg``: each gate's int16 input matmul;
    ``h``: the int8 output state; ``c``: the int16 cell state. Returns (int8 output, cell state)."""
    hz = tf.cast(h - p.h_zp, tf.float64)

    def pre(g: str, cell: Any) -> Any:
        z = saturate(xg[g] + mbqm(int_matmul(hz, p.wh[g]), p.h_mult[g]), 16)
        if cell is not None and g in p.peephole:
            z = saturate(z + mbqm(cell * p.peephole[g], p.peephole_mult[g]), 16)
        if p.ln_w:
            z = _int_layer_norm(z, p.ln_w[g], p.bias.get(g), p.ln_scale[g])
        return z

    f = _q15("logistic", pre("forget", c), 3)
    g_ = _q15("tanh", pre("cell", None), 3)
    i = 32767 - f if p.cifg else _q15("logistic", pre("input", c), 3)
    c_new = saturate(rounding_divide_by_pot(f * c, 15) + rounding_divide_by_pot(i * g_, 30 + p.cell_scale_exp), 16)
    if p.cell_clip > 0:
        c_new = tf.clip_by_value(c_new, -p.cell_clip, p.cell_clip)
    o = _q15("logistic", pre("output", c_new), 3)
    v = mbqm(o * _q15("tanh", c_new, 15 + p.cell_scale_exp), p.hidden_mult)
    if p.proj_w is None:
        return saturate(v + p.hidden_zp, 8), c_new  # the hidden int8 values become the output as they are
    # CalculateLstmOutputInteger8x8_16 passes -hidden_zp to the hidden rescale while the projection's
    # effective bias compensates +hidden_zp: a nonzero hidden zero point offsets the hidden by twice
    # itself (and saturates it). TFLite does that; so does this.
    hidden = saturate(v - p.hidden_zp, 8)
    acc = int_matmul(hidden + p.hidden_zp, p.proj_w)
    if p.proj_b is not None:
        acc = acc + p.proj_b
    out = saturate(mbqm(acc, p.proj_mult) + p.h_zp, 8)
    if p.proj_clip > 0:
        out = tf.clip_by_value(out, -p.proj_clip, p.proj_clip)
    return out, c_new


def run_int(ctx: OpContext, p: IntLstm, lay: LstmLayout, xs: Any, h0: Any, c0: Any, reverse: bool
             ) -> tuple[Any, Any, Any]:
    """Scan a time-major real sequence through the integer kernel; returns (real outputs, final real
    output state, final real cell state)."""
    x_t, h_t, c_t, out_t = ctx.in_tensor(0), ctx.in_tensor(lay.h_state), ctx.in_tensor(lay.c_state), ctx.out_tensor(0)
    xi = tf.cast(to_int(xs, scale(x_t), 0), tf.float64)  # the int8 input minus its zero point
    terms = {}
    for g in p.gates:
        acc = int_matmul(xi, p.wx[g])
        if not p.ln_w and g in p.bias:
            acc = acc + p.bias[g]  # the kernel folds the bias into the input matmul's effective bias
        terms[g] = saturate(mbqm(acc, p.x_mult[g]), 16)
    names = list(terms)

    def step(carry: Any, elems: Any) -> Any:
        h, c = carry
        return _int_step(p, dict(zip(names, elems)), h, c)

    h0 = to_int(h0, scale(h_t), p.h_zp)
    c0 = to_int(c0, scale(c_t), 0)
    hs, cs = tf.scan(step, tuple(terms[g] for g in names), initializer=(h0, c0), reverse=reverse)
    last = 0 if reverse else -1

    def real(q: Any, t: Tensor) -> Any:
        return tf.cast(tf.cast(q - int(zero_point(t)), tf.float64) * scale(t), tf.float32)

    return real(hs, out_t), real(hs[last], h_t), real(cs[last], c_t)
