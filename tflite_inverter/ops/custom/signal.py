"""tflite-micro's signal library (``signal/micro/kernels``): the fixed-point audio front end.

These kernels are integer code (int16 samples, uint32 energies, uint64 filter-bank sums, a kiss_fft
fixed-point FFT with per-stage rounding, lookup-table logarithms). Every rebuilder here reproduces
its kernel bit for bit with TensorFlow integer ops: int32/int64/uint64 arithmetic, arithmetic and
logical shifts, the same truncations to 16/32 bits (wraparound where C stores into a narrower type)
and the same saturation. Nothing goes through float except constant tables computed at build time
exactly as the C code computes them (kiss_fft's twiddles).

State: ``SignalFilterBankSpectralSubtraction`` keeps a per-channel noise estimate across
invocations (zeroed at Prepare, like TFLM); it lives in a ``tf.Variable`` owned by the module and is
updated after every call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._tf import tf
from ...model.ir import Operator, Subgraph
from ..context import OpContext
from ..registry import register

_OPTION_KEYS: dict[str, set[str]] = {
    "SignalWindow": {"shift"},
    "SignalFftAutoScale": set(),
    "SignalRfft": {"T", "fft_length"},
    "SignalEnergy": {"start_index", "end_index"},
    "SignalFilterBank": {"num_channels"},
    "SignalFilterBankSquareRoot": set(),
    "SignalFilterBankSpectralSubtraction": {
        "alternate_one_minus_smoothing", "alternate_smoothing", "clamping", "min_signal_remaining",
        "num_channels", "one_minus_smoothing", "smoothing", "smoothing_bits", "spectral_subtraction_bits"},
    "SignalPCAN": {"snr_shift"},
    "SignalFilterBankLog": {"input_correction_bits", "output_scale"},
}

#: TFLite TensorType value of INT16 (the only SignalRfft variant rebuilt: the fixed-point one).
_TENSOR_TYPE_INT16 = 7

#: signal/src/log.cc's log2 fraction lookup table (128 segments + padding).
_LOG_LUT = (
    0, 224, 442, 654, 861, 1063, 1259, 1450, 1636, 1817, 1992, 2163, 2329, 2490, 2646, 2797, 2944, 3087,
    3224, 3358, 3487, 3611, 3732, 3848, 3960, 4068, 4172, 4272, 4368, 4460, 4549, 4633, 4714, 4791, 4864,
    4934, 5001, 5063, 5123, 5178, 5231, 5280, 5326, 5368, 5408, 5444, 5477, 5507, 5533, 5557, 5578, 5595,
    5610, 5622, 5631, 5637, 5640, 5641, 5638, 5633, 5626, 5615, 5602, 5586, 5568, 5547, 5524, 5498, 5470,
    5439, 5406, 5370, 5332, 5291, 5249, 5203, 5156, 5106, 5054, 5000, 4944, 4885, 4825, 4762, 4697, 4630,
    4561, 4490, 4416, 4341, 4264, 4184, 4103, 4020, 3935, 3848, 3759, 3668, 3575, 3481, 3384, 3286, 3186,
    3084, 2981, 2875, 2768, 2659, 2549, 2437, 2323, 2207, 2090, 1971, 1851, 1729, 1605, 1480, 1353, 1224,
    1094, 963, 830, 695, 559, 421, 282, 142, 0, 0)

_U32 = 0xFFFFFFFF


# -- option checks ---------------------------------------------------------------------------------
def _opts(op: Operator) -> dict[str, Any]:
    return op.flex_options if isinstance(op.flex_options, dict) else {}


def _common_problems(op: Operator) -> list[str]:
    name = op.custom_code or ""
    if not isinstance(op.flex_options, dict):
        return [f"{name}: custom options are not a FlexBuffer map"]
    want = _OPTION_KEYS[name]
    have = set(op.flex_options)
    problems = []
    if want - have:
        problems.append(f"{name}: missing options {sorted(want - have)}")
    if have - want:
        problems.append(f"{name}: unknown options {sorted(have - want)} (not read by the tflite-micro kernel "
                        "this rebuilder reproduces)")
    return problems


def _types(op: Operator, sg: Subgraph, ins: tuple[str, ...], outs: tuple[str, ...]) -> list[str]:
    got_in = tuple(sg.tensors[t].type_name if t >= 0 else "ABSENT" for t in op.inputs)
    got_out = tuple(sg.tensors[t].type_name if t >= 0 else "ABSENT" for t in op.outputs)
    if got_in != ins or got_out != outs:
        return [f"{op.custom_code}: tensor types {got_in} -> {got_out}, the kernel takes {ins} -> {outs}"]
    return []


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and lo <= int(v) <= hi


def _shape(sg: Subgraph, ti: int) -> tuple[int, ...]:
    return tuple(sg.tensors[ti].shape)


# -- integer helpers (TF) --------------------------------------------------------------------------
def _wrap16(x: Any) -> Any:
    """Store an int32 into int16 (two's complement wraparound, as C does)."""
    return tf.cast(tf.cast(x, tf.int16), tf.int32)


def _msb32(x: Any) -> Any:
    """MostSignificantBit32 for values in [1, 2**32) held in int64: the 1-based index of the top bit."""
    powers = tf.constant([1 << k for k in range(32)], tf.int64)
    return tf.reduce_sum(tf.cast(tf.expand_dims(x, -1) >= powers, tf.int64), axis=-1)


def _shr(x: Any, n: Any) -> Any:
    return tf.bitwise.right_shift(x, tf.cast(n, x.dtype))


def _shl(x: Any, n: Any) -> Any:
    return tf.bitwise.left_shift(x, tf.cast(n, x.dtype))


def _and(x: Any, mask: int) -> Any:
    return tf.bitwise.bitwise_and(x, tf.constant(mask, x.dtype))


# -- SignalWindow ----------------------------------------------------------------------------------
def _check_window(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("INT16", "INT16"), ("INT16",))
    if not p and not _int_in(_opts(op)["shift"], 0, 31):
        p.append(f"SignalWindow: shift {_opts(op)['shift']!r} outside [0, 31]")
    if not p and _shape(sg, op.inputs[0])[-1:] != _shape(sg, op.inputs[1])[-1:]:
        p.append("SignalWindow: window length differs from the input's last dimension")
    return p


@register("CUSTOM:SignalWindow", check=_check_window)
def signal_window(ctx: OpContext) -> list[Any]:
    """``clamp((x * w) >> shift, int16)`` in int32, the window applied along the last axis."""
    x = tf.cast(ctx.input(0), tf.int32) * tf.cast(ctx.input(1), tf.int32)
    y = tf.clip_by_value(_shr(x, ctx.op.flex_options["shift"]), -32768, 32767)
    return [tf.cast(y, tf.int16)]


# -- SignalFftAutoScale ----------------------------------------------------------------------------
def _check_auto_scale(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("INT16",), ("INT16", "INT32"))
    if not p and len(_shape(sg, op.inputs[0])) != 1:
        p.append("SignalFftAutoScale: input must be 1-D")
    return p


def _max_abs16(x: Any) -> Any:
    """MaxAbs16 of the kernel, which is sequential (``m = v if v > m else -v if -v > m``) with an
    int16 ``m``: ``-(-32768)`` stores -32768, so every -32768 resets ``m`` to -32768. After the last
    one, at index k, the next element always wins (``v > -32768``), negative or not, and from then on
    ``m = max(m, |v|)``. Written in closed form, without a loop, so the converter takes it back (a
    ``tf.foldl`` becomes TensorList ops it cannot lower)."""
    n = tf.size(x)
    idx = tf.range(n)
    absx = tf.abs(x)
    k = tf.reduce_max(tf.concat([tf.where(tf.equal(x, -32768), idx, -1), [-1]], 0))  # -1: no -32768
    first = tf.gather(tf.concat([x, [0]], 0), tf.minimum(k + 1, n))
    rest = tf.reduce_max(tf.concat([tf.where(idx > k + 1, absx, -32768), [-32768]], 0))
    after_min = tf.where(k + 1 < n, tf.maximum(first, rest), -32768)
    plain = tf.reduce_max(tf.concat([absx, [0]], 0))
    return tf.where(k >= 0, after_min, plain)


@register("CUSTOM:SignalFftAutoScale", check=_check_auto_scale)
def signal_fft_auto_scale(ctx: OpContext) -> list[Any]:
    """Scale by ``2**(15 - msb(max|x|))`` (0 when max|x| is 0 or not positive) and return the shift."""
    x = tf.cast(ctx.input(0), tf.int32)
    m = _max_abs16(x)
    msb = tf.cast(_msb32(tf.cast(tf.maximum(m, 1), tf.int64)), tf.int32)
    # __builtin_clz path: msb(0) is 32 and a negative int16 becomes a huge uint32 (msb 32) -> no scaling.
    scale = tf.where(m > 0, tf.maximum(16 - msb - 1, 0), 0)
    y = _wrap16(x * _shl(tf.constant(1, tf.int32), scale))
    return [tf.cast(y, tf.int16), scale]


# -- SignalRfft (kiss_fft, FIXED_POINT=16) ---------------------------------------------------------
def _kiss_factors(n: int) -> list[int]:
    """kiss_fft's kf_factor: radix 4 first, then 2, 3, 5, ...; p = n once p exceeds floor(sqrt(n))."""
    p, floor_sqrt, out = 4, math.floor(math.sqrt(n)), []
    while True:
        while n % p:
            p = 2 if p == 4 else 3 if p == 2 else p + 2
            if p > floor_sqrt:
                p = n
        n //= p
        out.append(p)
        if n <= 1:
            return out


def _check_rfft(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op)
    if p:
        return p
    o = _opts(op)
    if o["T"] != _TENSOR_TYPE_INT16:
        return [f"SignalRfft: T={o['T']!r}: only the int16 fixed-point kiss_fft variant (T=7) is rebuilt; the "
                "float32/int32 variants are not reproduced bit-exactly"]
    p = _types(op, sg, ("INT16",), ("INT16",))
    n = o["fft_length"]
    if not _int_in(n, 4, 1 << 20) or n % 2:
        return p + [f"SignalRfft: fft_length {n!r} is not an even length >= 4"]
    bad = [f for f in _kiss_factors(n // 2) if f not in (2, 4)]
    if bad:
        p.append(f"SignalRfft: fft_length {n} needs kiss_fft radix {sorted(set(bad))} butterflies; only radix 2/4 "
                 "(power-of-two lengths) are rebuilt")
    ishape, oshape = _shape(sg, op.inputs[0]), _shape(sg, op.outputs[0])
    if not ishape or ishape[-1] > n or oshape[-1:] != (n + 2,) or ishape[:-1] != oshape[:-1]:
        p.append(f"SignalRfft: shapes {ishape} -> {oshape} do not fit fft_length {n}")
    return p


def _twiddles(n: int, phase_fn: Any) -> np.ndarray:
    """kf_cexp in fixed point: ``floor(.5 + 32767 * cos/sin(phase))`` with the C double math."""
    ph = [phase_fn(i) for i in range(n)]
    return np.array([[math.floor(.5 + 32767 * math.cos(a)), math.floor(.5 + 32767 * math.sin(a))] for a in ph],
                    dtype=np.int32).reshape(n, 2)


def _stages(ncfft: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """kf_work unrolled: the input permutation and the (p, m, fstride) butterfly stages, innermost first."""
    factors = _kiss_factors(ncfft)
    perm = np.zeros(ncfft, dtype=np.int64)
    levels, m, fstride = [], ncfft, 1
    for p in factors:
        m //= p
        levels.append((p, m, fstride))
        fstride *= p
    for out_idx in range(ncfft):  # Fout[sum q_l * m_l] = f[sum q_l * fstride_l]
        rem, src = out_idx, 0
        for _p, m_l, fs in levels:
            q, rem = divmod(rem, m_l)
            src += q * fs
        perm[out_idx] = src
    return perm, levels[::-1]


def _sround(x: Any) -> Any:
    return _wrap16(_shr(x + 16384, 15))


def _fixdiv(x: Any, k: int) -> Any:
    return _sround(x * (32767 // k))


def _cmul(ar: Any, ai: Any, br: Any, bi: Any) -> tuple[Any, Any]:
    return _sround(ar * br - ai * bi), _sround(ar * bi + ai * br)


def _kiss_fft(r: Any, i: Any, ncfft: int) -> tuple[Any, Any]:
    """Forward complex kiss_fft on int32-held int16 rows [B, ncfft] (radix 2/4 only)."""
    tw = _twiddles(ncfft, lambda k: -2 * math.pi * k / ncfft)
    perm, stages = _stages(ncfft)
    r, i = tf.gather(r, perm, axis=1), tf.gather(i, perm, axis=1)
    for p, m, fstride in stages:
        shape = [-1, ncfft // (p * m), p, m]
        r4, i4 = tf.reshape(r, shape), tf.reshape(i, shape)
        xr = [_fixdiv(r4[:, :, j], p) for j in range(p)]
        xi = [_fixdiv(i4[:, :, j], p) for j in range(p)]
        tws = [tw[(j * np.arange(m) * fstride) % ncfft] for j in range(p)]
        muls = [_cmul(xr[j], xi[j], tf.constant(tws[j][:, 0]), tf.constant(tws[j][:, 1])) for j in range(1, p)]

        if p == 2:
            tr, ti = muls[0]
            outs = [(_wrap16(xr[0] + tr), _wrap16(xi[0] + ti)), (_wrap16(xr[0] - tr), _wrap16(xi[0] - ti))]
        else:
            (s0r, s0i), (s1r, s1i), (s2r, s2i) = muls
            s5r, s5i = _wrap16(xr[0] - s1r), _wrap16(xi[0] - s1i)
            f0r, f0i = _wrap16(xr[0] + s1r), _wrap16(xi[0] + s1i)
            s3r, s3i = _wrap16(s0r + s2r), _wrap16(s0i + s2i)
            s4r, s4i = _wrap16(s0r - s2r), _wrap16(s0i - s2i)
            outs = [(_wrap16(f0r + s3r), _wrap16(f0i + s3i)),
                    (_wrap16(s5r + s4i), _wrap16(s5i - s4r)),
                    (_wrap16(f0r - s3r), _wrap16(f0i - s3i)),
                    (_wrap16(s5r - s4i), _wrap16(s5i + s4r))]
        r = tf.reshape(tf.stack([o[0] for o in outs], axis=2), [-1, ncfft])
        i = tf.reshape(tf.stack([o[1] for o in outs], axis=2), [-1, ncfft])
    return r, i


@register("CUSTOM:SignalRfft", check=_check_rfft)
def signal_rfft(ctx: OpContext) -> list[Any]:
    """kiss_fftr in 16-bit fixed point: the input (zero-padded to fft_length) packed as fft_length/2
    complex values, a radix-4/2 kiss_fft with a rounding /p before every butterfly, then the real-FFT
    split with its own /2 and ``>> 1``. Output: interleaved (re, im) int16 for fft_length/2 + 1 bins."""
    n = int(ctx.op.flex_options["fft_length"])
    ncfft = n // 2
    x = tf.cast(ctx.input(0), tf.int32)
    length = ctx.in_tensor(0).shape[-1]
    x = tf.reshape(x, [-1, length])
    x = tf.pad(x, [[0, 0], [0, n - length]])
    z = tf.reshape(x, [-1, ncfft, 2])
    r, i = _kiss_fft(z[:, :, 0], z[:, :, 1], ncfft)

    tdr, tdi = _fixdiv(r[:, 0], 2), _fixdiv(i[:, 0], 2)
    dc, nyq = _wrap16(tdr + tdi), _wrap16(tdr - tdi)
    half = ncfft // 2
    k = np.arange(1, half + 1)
    stw = _twiddles(half, lambda j: -math.pi * ((j + 1) / ncfft + .5))
    fpkr, fpki = _fixdiv(tf.gather(r, k, axis=1), 2), _fixdiv(tf.gather(i, k, axis=1), 2)
    fpnkr = _fixdiv(tf.gather(r, ncfft - k, axis=1), 2)
    fpnki = _fixdiv(_wrap16(-tf.gather(i, ncfft - k, axis=1)), 2)
    f1r, f1i = _wrap16(fpkr + fpnkr), _wrap16(fpki + fpnki)
    f2r, f2i = _wrap16(fpkr - fpnkr), _wrap16(fpki - fpnki)
    twr, twi = _cmul(f2r, f2i, tf.constant(stw[:, 0]), tf.constant(stw[:, 1]))
    lo_r, lo_i = _wrap16(_shr(f1r + twr, 1)), _wrap16(_shr(f1i + twi, 1))  # bins 1..half
    hi_r, hi_i = _wrap16(_shr(f1r - twr, 1)), _wrap16(_shr(twi - f1i, 1))  # bins ncfft-1..ncfft-half
    # Bin `half` is written twice (k = half hits ncfft - k = half); the second write wins.
    zero = tf.zeros_like(dc)[:, None]
    re = tf.concat([dc[:, None], lo_r[:, :half - 1], tf.reverse(hi_r, [1]), nyq[:, None]], axis=1)
    im = tf.concat([zero, lo_i[:, :half - 1], tf.reverse(hi_i, [1]), zero], axis=1)
    out = tf.reshape(tf.stack([re, im], axis=-1), ctx.out_tensor(0).shape)
    return [tf.cast(out, tf.int16)]


# -- SignalEnergy ----------------------------------------------------------------------------------
def _check_energy(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("INT16",), ("UINT32",))
    if p:
        return p
    o = _opts(op)
    ishape, oshape = _shape(sg, op.inputs[0]), _shape(sg, op.outputs[0])
    if len(ishape) != 1 or len(oshape) != 1:
        return ["SignalEnergy: input and output must be 1-D"]
    top = min(oshape[0], ishape[0] // 2)
    if not (_int_in(o["start_index"], 0, top) and _int_in(o["end_index"], 0, top)):
        p.append(f"SignalEnergy: start_index {o['start_index']!r} / end_index {o['end_index']!r} outside the "
                 f"{top} complex bins")
    return p


@register("CUSTOM:SignalEnergy", check=_check_energy)
def signal_energy(ctx: OpContext) -> list[Any]:
    """``re*re + im*im`` for bins [start_index, end_index). The kernel leaves the other output elements
    untouched (whatever the arena held); they are 0 here (the stock front end overwrites them with 0)."""
    o = ctx.op.flex_options
    start, end = int(o["start_index"]), int(o["end_index"])
    n_out = ctx.out_tensor(0).shape[0]
    z = tf.reshape(tf.cast(ctx.input(0), tf.int64), [-1, 2])
    e = z[:, 0] * z[:, 0] + z[:, 1] * z[:, 1]  # <= 2**31: the int32 overflow lands on the same uint32
    mask = np.zeros(z.shape[0], dtype=bool)
    mask[start:end] = True
    e = tf.where(tf.constant(mask), e, tf.zeros_like(e))[:n_out]
    if z.shape[0] < n_out:
        e = tf.pad(e, [[0, n_out - z.shape[0]]])
    return [tf.cast(e, tf.uint32)]


# -- SignalFilterBank ------------------------------------------------------------------------------
def _check_filter_bank(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("UINT32",) + ("INT16",) * 5, ("UINT64",))
    if p:
        return p
    n = _opts(op)["num_channels"]
    if not all(sg.tensors[t].is_constant for t in op.inputs[1:]):
        return ["SignalFilterBank: weights, unweights, starts and widths must be constant tensors"]
    if not _int_in(n, 1, 1 << 16) or _shape(sg, op.outputs[0]) != (n,):
        return [f"SignalFilterBank: num_channels {n!r} does not match output shape {_shape(sg, op.outputs[0])}"]
    try:
        _filter_bank_terms(op, sg)
    except ValueError as exc:
        p.append(f"SignalFilterBank: {exc}")
    return p


#: Most multiply-accumulate terms a filter bank may have (real ones have about 2 x the FFT bins);
#: the bands come from the file, so a hostile one could otherwise ask for num_channels x bins terms.
MAX_FILTER_BANK_TERMS = 1 << 24


def _filter_bank_terms(op: Operator, sg: Subgraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FilterbankAccumulateChannels as (energy index, int64 weight, output channel) per term: channel
    c gets the weighted band c+1 and the unweighted band c (channel -1, the scratch one, is dropped
    like the kernel does). Sparse, so memory follows the bands' total width, not channels x bins."""
    n = int(_opts(op)["num_channels"])
    w, uw, fstart, wstart, width = (np.asarray(sg.tensors[t].data()).astype(np.int64) for t in op.inputs[1:])
    k = _shape(sg, op.inputs[0])[0]
    if min(len(fstart), len(wstart), len(width)) < n + 1:
        raise ValueError(f"channel tables shorter than num_channels + 1 = {n + 1}")
    f0, w0, wd = fstart[:n + 1], wstart[:n + 1], width[:n + 1]
    bad = np.flatnonzero((wd < 0) | (f0 < 0) | (w0 < 0) | (f0 + wd > k) | (w0 + wd > min(len(w), len(uw))))
    if bad.size:
        c = int(bad[0])
        raise ValueError(f"channel {c} (start {f0[c]}, weight start {w0[c]}, width {wd[c]}) reads out of bounds")
    total = int(wd[1:].sum() + wd[:-1].sum())
    if total > MAX_FILTER_BANK_TERMS:
        raise ValueError(f"the bands total {total} multiply-accumulate terms, more than {MAX_FILTER_BANK_TERMS}")
    idx, wts, chan = [], [], []
    for c in range(n + 1):
        lo, hi, a, b = int(f0[c]), int(f0[c] + wd[c]), int(w0[c]), int(w0[c] + wd[c])
        for out_c, table in ((c - 1, w), (c, uw)):  # int16 weights sign-extend into the uint64 sum (mod 2**64)
            if 0 <= out_c < n and hi > lo:
                idx.append(np.arange(lo, hi, dtype=np.int64))
                wts.append(table[a:b])
                chan.append(np.full(hi - lo, out_c, dtype=np.int64))
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(idx), np.concatenate(wts), np.concatenate(chan)


@register("CUSTOM:SignalFilterBank", check=_check_filter_bank)
def signal_filter_bank(ctx: OpContext) -> list[Any]:
    """Triangular filter bank: uint64 sums of int16 weight x uint32 energy (int64 arithmetic wraps like
    the uint64 accumulators)."""
    idx, wts, chan = _filter_bank_terms(ctx.op, ctx.subgraph)
    x = tf.cast(ctx.input(0), tf.int64)
    s = tf.math.unsorted_segment_sum(tf.constant(wts) * tf.gather(x, tf.constant(idx)), tf.constant(chan),
                                     int(_opts(ctx.op)["num_channels"]))
    return [tf.bitcast(s, tf.uint64)]


# -- SignalFilterBankSquareRoot --------------------------------------------------------------------
def _check_sqrt(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("UINT64", "INT32"), ("UINT32",))
    if not p and len(_shape(sg, op.inputs[0])) != 1:
        p.append("SignalFilterBankSquareRoot: input must be 1-D")
    return p


def _isqrt_u64(n: Any) -> Any:
    """floor(sqrt(n)) for uint64 n: a float64 estimate corrected by exact uint64 comparisons."""
    r = tf.cast(tf.floor(tf.sqrt(tf.cast(n, tf.float64))), tf.uint64)
    r = tf.minimum(r, tf.constant(_U32, tf.uint64))
    for _ in range(2):
        r = tf.where(r * r > n, r - 1, r)
    for _ in range(2):
        r1 = r + 1
        r = tf.where(tf.logical_and(r1 <= _U32, r1 * r1 <= n), r1, r)
    return r


@register("CUSTOM:SignalFilterBankSquareRoot", check=_check_sqrt)
def signal_filter_bank_square_root(ctx: OpContext) -> list[Any]:
    """Sqrt64 (Sqrt32 below 2**32) rounded to nearest by ``remainder > root`` unless the root is at
    its 16-bit / 32-bit cap, then ``>> scale_bits``."""
    n = ctx.input(0)
    r = _isqrt_u64(n)
    cap = tf.where(n < (1 << 32), tf.constant(0xFFFF, tf.uint64), tf.constant(_U32, tf.uint64))
    r = tf.where(tf.logical_and(n - r * r > r, r != cap), r + 1, r)
    y = _shr(tf.cast(r, tf.int64), ctx.input(1))
    return [tf.cast(y, tf.uint32)]


# -- SignalFilterBankSpectralSubtraction -----------------------------------------------------------
def _check_spectral(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("UINT32",), ("UINT32", "UINT32"))
    if p:
        return p
    o = _opts(op)
    n = o["num_channels"]
    if not _int_in(n, 1, 1 << 20) or any(_shape(sg, t) != (n,) for t in (*op.inputs, *op.outputs)):
        p.append(f"SignalFilterBankSpectralSubtraction: num_channels {n!r} does not match the 1-D tensor shapes")
    for key in ("smoothing_bits", "spectral_subtraction_bits"):
        if not _int_in(o[key], 0, 31):
            p.append(f"SignalFilterBankSpectralSubtraction: {key} {o[key]!r} outside [0, 31]")
    for key in ("alternate_one_minus_smoothing", "alternate_smoothing", "min_signal_remaining",
                "one_minus_smoothing", "smoothing"):
        if not _int_in(o[key], 0, (1 << 31) - 1):
            p.append(f"SignalFilterBankSpectralSubtraction: {key} {o[key]!r} is not a non-negative int32")
    if not isinstance(o["clamping"], bool):
        p.append(f"SignalFilterBankSpectralSubtraction: clamping {o['clamping']!r} is not a bool")
    return p


@register("CUSTOM:SignalFilterBankSpectralSubtraction", check=_check_spectral)
def signal_filter_bank_spectral_subtraction(ctx: OpContext) -> list[Any]:
    """Noise estimate smoothing (alternate coefficients on odd channels) and subtraction with a floor;
    the estimate persists across calls in a module variable (zero at start, like TFLM's Prepare)."""
    o = ctx.op.flex_options
    n = int(o["num_channels"])
    state = ctx.builder.resource(("SignalFilterBankSpectralSubtraction", ctx.subgraph.index, ctx.op.index),
                                 lambda: tf.Variable(tf.zeros([n], tf.int64), trainable=False,
                                                     name=f"noise_estimate_{ctx.op.index}"))
    even = np.arange(n) % 2 == 0
    smooth = tf.constant(np.where(even, o["smoothing"], o["alternate_smoothing"]).astype(np.int64))
    one_minus = tf.constant(np.where(even, o["one_minus_smoothing"], o["alternate_one_minus_smoothing"])
                            .astype(np.int64))
    sb, ssb = int(o["smoothing_bits"]), int(o["spectral_subtraction_bits"])
    x = tf.cast(ctx.input(0), tf.int64)
    scaled = _and(_shl(x, sb), _U32)
    u64 = tf.uint64
    acc = (tf.cast(scaled, u64) * tf.cast(smooth, u64)
           + tf.cast(state.read_value(), u64) * tf.cast(one_minus, u64))  # uint64 wraps like C
    noise = _and(tf.cast(_shr(acc, ssb), tf.int64), _U32)
    est = tf.minimum(noise, scaled)
    if o["clamping"]:
        noise = est
    floor = _and(tf.cast(_shr(tf.cast(x, u64) * int(o["min_signal_remaining"]), ssb), tf.int64), _U32)
    out = tf.maximum(_shr(scaled - est, sb), floor)
    state.assign(noise)
    return [tf.cast(out, tf.uint32), tf.cast(noise, tf.uint32)]


# -- SignalPCAN ------------------------------------------------------------------------------------
def _check_pcan(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("UINT32", "UINT32", "INT16"), ("UINT32",))
    if p:
        return p
    if not _int_in(_opts(op)["snr_shift"], 0, 32):
        p.append(f"SignalPCAN: snr_shift {_opts(op)['snr_shift']!r} outside [0, 32]")
    lut = _shape(sg, op.inputs[2])
    if len(lut) != 1 or lut[0] < 4 * 32 - 3:
        p.append(f"SignalPCAN: gain_lut shape {lut}: the kernel indexes up to 125 entries for 32-bit noise "
                 "estimates")
    if _shape(sg, op.inputs[0]) != _shape(sg, op.inputs[1]) or len(_shape(sg, op.inputs[0])) != 1:
        p.append("SignalPCAN: input and noise_estimate must be 1-D of the same length")
    return p


@register("CUSTOM:SignalPCAN", check=_check_pcan)
def signal_pcan(ctx: OpContext) -> list[Any]:
    """Per-channel automatic gain control: gain = WideDynamicFunction(noise) from the piecewise
    quadratic LUT, snr = (x * gain) >> snr_shift, then the PcanShrink curve (12 -> 6 fractional bits)."""
    x = tf.cast(ctx.input(0), tf.int64)
    noise = tf.cast(ctx.input(1), tf.int64)
    lut = tf.cast(ctx.input(2), tf.int64)
    interval = _msb32(tf.maximum(noise, 1))
    base = tf.maximum(4 * interval - 6, 0)
    l0, l1, l2 = (tf.gather(lut, base + j) for j in range(3))
    frac = _and(tf.where(interval < 11, _shl(noise, tf.maximum(11 - interval, 0)),
                         _shr(noise, tf.maximum(interval - 11, 0))), 0x3FF)
    res = _shr(l2 * frac, 5) + l1 * 32
    res = _shr(res * frac + (1 << 14), 15)
    gain16 = tf.cast(tf.cast(res + l0, tf.int16), tf.int64)
    gain16 = tf.where(noise <= 2, tf.gather(lut, tf.minimum(noise, 2)), gain16)
    gain = tf.cast(_and(gain16, _U32), tf.uint64)  # int16 -> uint32 sign-extends
    prod = tf.cast(x, tf.uint64) * gain  # uint64 wraps like the C product
    snr = _and(tf.cast(_shr(prod, int(ctx.op.flex_options["snr_shift"])), tf.int64), _U32)
    out = tf.where(snr < (2 << 12), _shr(snr * snr, 20), _shr(snr, 6) - 64)
    return [tf.cast(out, tf.uint32)]


# -- SignalFilterBankLog ---------------------------------------------------------------------------
def _check_log(op: Operator, sg: Subgraph) -> list[str]:
    p = _common_problems(op) + _types(op, sg, ("UINT32",), ("INT16",))
    if p:
        return p
    o = _opts(op)
    if not _int_in(o["input_correction_bits"], 0, 31):
        p.append(f"SignalFilterBankLog: input_correction_bits {o['input_correction_bits']!r} outside [0, 31]")
    if not _int_in(o["output_scale"], -(1 << 31), (1 << 31) - 1):
        p.append(f"SignalFilterBankLog: output_scale {o['output_scale']!r} is not an int32")
    return p


@register("CUSTOM:SignalFilterBankLog", check=_check_log)
def signal_filter_bank_log(ctx: OpContext) -> list[Any]:
    """Log32: integer part from the top bit, fraction from the 128-segment LUT with linear
    interpolation, times ln2 (45426/2**16) and output_scale, each step rounded as in log.cc."""
    o = ctx.op.flex_options
    x = tf.cast(ctx.input(0), tf.int64)
    scaled = _and(_shl(x, int(o["input_correction_bits"])), _U32)
    safe = tf.maximum(scaled, 2)
    integer = _msb32(safe) - 1
    frac = safe - _shl(tf.ones_like(safe), integer)
    frac = tf.where(integer < 16, _shl(frac, tf.maximum(16 - integer, 0)), _shr(frac, tf.maximum(integer - 16, 0)))
    seg = _shr(frac, 9)
    lut = tf.constant(np.array(_LOG_LUT, dtype=np.int64))
    c0, c1 = tf.gather(lut, seg), tf.gather(lut, seg + 1)
    fraction = frac + c0 + _shr((c1 - c0) * (frac - 512 * seg), 16)
    log2 = _and(_shl(integer, 16) + fraction, _U32)
    loge = _and(_shr(45426 * log2 + 32768, 16), _U32)
    scale = int(o["output_scale"]) & _U32
    scaled_log = _and(_and(scale * loge, _U32) + 32768, _U32)
    y = tf.minimum(_shr(scaled_log, 16), 32767)
    y = tf.where(scaled > 1, y, tf.zeros_like(y))
    return [tf.cast(y, tf.int16)]
