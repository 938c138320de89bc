"""tflite-micro signal ops: the rebuilt TF graphs against literal integer transcriptions of the kernels.

The stock TFLite interpreter has no kernels for these ops, so the reference is a plain-Python
transcription of ``signal/src/*.cc`` and kiss_fft (FIXED_POINT=16) written here, element by element
with C's truncations; every comparison is exact (``array_equal``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import tflite_inverter.ops.custom.signal as signal
from tflite_inverter import read_model
from tflite_inverter.ops import registry

from .conftest import CORPUS_DIR

FLOAT_MODEL = CORPUS_DIR / "tflite-micro__audio_preprocessor_float.tflite"
INT8_MODEL = CORPUS_DIR / "tflite-micro__audio_preprocessor_int8.tflite"
needs_corpus = pytest.mark.skipif(not FLOAT_MODEL.exists(), reason="audio preprocessor corpus models absent")


# -- literal references ----------------------------------------------------------------------------
def s16(v: int) -> int:
    return ((v + 32768) & 0xFFFF) - 32768


def msb32(x: int) -> int:
    return 32 if x == 0 else x.bit_length()  # __builtin_clz path


def ref_window(x, w, shift):
    return np.array([min(max((int(a) * int(b)) >> shift, -32768), 32767) for a, b in zip(x, w)], np.int16)


def ref_auto_scale(x):
    m = 0
    for v in (int(t) for t in x):
        if v > m:
            m = v
        elif -v > m:
            m = s16(-v)
    scale = max(16 - msb32(m & 0xFFFFFFFF) - 1, 0)
    return np.array([s16(int(v) * (1 << scale)) for v in x], np.int16), scale


def sround(x):
    return s16((x + 16384) >> 15)


def fixdiv(c, k):
    return (sround(c[0] * (32767 // k)), sround(c[1] * (32767 // k)))


def cmul(a, b):
    return (sround(a[0] * b[0] - a[1] * b[1]), sround(a[0] * b[1] + a[1] * b[0]))


def kf_factor(n):
    p, fs, out = 4, math.floor(math.sqrt(n)), []
    while True:
        while n % p:
            p = {4: 2, 2: 3}.get(p, p + 2)
            if p > fs:
                p = n
        n //= p
        out += [p, n]
        if n <= 1:
            return out


def ref_kiss_fft(fin, nfft):
    tw = [(math.floor(.5 + 32767 * math.cos(-2 * math.pi * i / nfft)),
           math.floor(.5 + 32767 * math.sin(-2 * math.pi * i / nfft))) for i in range(nfft)]
    fout = [None] * nfft

    def work(off, f, fstride, factors):
        p, m = factors[0], factors[1]
        for q in range(p):
            if m == 1:
                fout[off + q] = fin[f + q * fstride]
            else:
                work(off + q * m, f + q * fstride, fstride * p, factors[2:])
        for k in range(m):
            idx = [off + k + j * m for j in range(p)]
            x = [fixdiv(fout[i], p) for i in idx]
            if p == 2:
                t = cmul(x[1], tw[k * fstride])
                fout[idx[1]] = (s16(x[0][0] - t[0]), s16(x[0][1] - t[1]))
                fout[idx[0]] = (s16(x[0][0] + t[0]), s16(x[0][1] + t[1]))
                continue
            assert p == 4
            s0, s1, s2 = cmul(x[1], tw[k * fstride]), cmul(x[2], tw[2 * k * fstride]), cmul(x[3], tw[3 * k * fstride])
            s5 = (s16(x[0][0] - s1[0]), s16(x[0][1] - s1[1]))
            f0 = (s16(x[0][0] + s1[0]), s16(x[0][1] + s1[1]))
            s3 = (s16(s0[0] + s2[0]), s16(s0[1] + s2[1]))
            s4 = (s16(s0[0] - s2[0]), s16(s0[1] - s2[1]))
            fout[idx[2]] = (s16(f0[0] - s3[0]), s16(f0[1] - s3[1]))
            fout[idx[0]] = (s16(f0[0] + s3[0]), s16(f0[1] + s3[1]))
            fout[idx[1]] = (s16(s5[0] + s4[1]), s16(s5[1] - s4[0]))
            fout[idx[3]] = (s16(s5[0] - s4[1]), s16(s5[1] + s4[0]))

    work(0, 0, 1, kf_factor(nfft))
    return fout


def ref_rfft(x, fft_length):
    buf = [int(v) for v in x] + [0] * (fft_length - len(x))
    ncfft = fft_length // 2
    tmp = ref_kiss_fft([(buf[2 * k], buf[2 * k + 1]) for k in range(ncfft)], ncfft)
    stw = []
    for i in range(ncfft // 2):
        ph = -math.pi * ((i + 1) / ncfft + .5)
        stw.append((math.floor(.5 + 32767 * math.cos(ph)), math.floor(.5 + 32767 * math.sin(ph))))
    out = [[0, 0] for _ in range(ncfft + 1)]
    tdc = fixdiv(tmp[0], 2)
    out[0] = [s16(tdc[0] + tdc[1]), 0]
    out[ncfft] = [s16(tdc[0] - tdc[1]), 0]
    for k in range(1, ncfft // 2 + 1):
        fpk = fixdiv(tmp[k], 2)
        fpnk = fixdiv((tmp[ncfft - k][0], s16(-tmp[ncfft - k][1])), 2)
        f1k = (s16(fpk[0] + fpnk[0]), s16(fpk[1] + fpnk[1]))
        f2k = (s16(fpk[0] - fpnk[0]), s16(fpk[1] - fpnk[1]))
        tw = cmul(f2k, stw[k - 1])
        out[k] = [s16((f1k[0] + tw[0]) >> 1), s16((f1k[1] + tw[1]) >> 1)]
        out[ncfft - k] = [s16((f1k[0] - tw[0]) >> 1), s16((tw[1] - f1k[1]) >> 1)]
    return np.array(out, np.int16).reshape(-1)


def ref_energy(z, start, end, n_out):
    out = np.zeros(n_out, np.uint32)
    for i in range(start, end):
        out[i] = (int(z[2 * i]) ** 2 + int(z[2 * i + 1]) ** 2) & 0xFFFFFFFF
    return out


def ref_filter_bank(x, w, uw, fstart, wstart, widths, n):
    out, wacc, uacc = [], 0, 0
    for i in range(n + 1):
        for j in range(int(widths[i])):
            v = int(x[int(fstart[i]) + j])
            wacc = (wacc + (int(w[int(wstart[i]) + j]) & (2**64 - 1)) * v) % 2**64
            uacc = (uacc + (int(uw[int(wstart[i]) + j]) & (2**64 - 1)) * v) % 2**64
        out.append(wacc)
        wacc, uacc = uacc, 0
    return np.array(out[1:], np.uint64)


def _sqrt_loop(num, width, cap):
    if width == 32 and num == 0:
        return 0
    res = 0
    mbn = (width - msb32(num) if width == 32 else 64 - num.bit_length()) | 1
    bit = 1 << (width - 1 - mbn)
    for _ in range((width - 1 - mbn) // 2 + 1):
        if num >= res + bit:
            num -= res + bit
            res = (res >> 1) + bit
        else:
            res >>= 1
        bit >>= 2
    if num > res and res != cap:
        res += 1
    return res


def ref_sqrt(x, scale_bits):
    out = []
    for v in (int(t) for t in x):
        r = _sqrt_loop(v, 32, 0xFFFF) if v >> 32 == 0 else _sqrt_loop(v, 64, 0xFFFFFFFF)
        out.append(r >> scale_bits)
    return np.array(out, np.uint32)


def ref_spectral(o, x, noise):
    o = {k: v if isinstance(v, bool) else int(v) for k, v in o.items()}
    out, noise = [], [int(t) for t in noise]
    for i, v in enumerate(int(t) for t in x):
        sm, om = ((o["smoothing"], o["one_minus_smoothing"]) if i % 2 == 0
                  else (o["alternate_smoothing"], o["alternate_one_minus_smoothing"]))
        ssu = (v << o["smoothing_bits"]) & 0xFFFFFFFF
        noise[i] = (((ssu * sm + noise[i] * om) % 2**64) >> o["spectral_subtraction_bits"]) & 0xFFFFFFFF
        est = noise[i]
        if est > ssu:
            est = ssu
            if o["clamping"]:
                noise[i] = est
        floor = ((v * o["min_signal_remaining"]) >> o["spectral_subtraction_bits"]) & 0xFFFFFFFF
        sub = (ssu - est) >> o["smoothing_bits"]
        out.append(max(sub, floor))
    return np.array(out, np.uint32), np.array(noise, np.uint32)


def ref_pcan(x, noise, lut, snr_shift):
    lut = [int(v) for v in lut]
    out = []
    for v, n in zip((int(t) for t in x), (int(t) for t in noise)):
        if n <= 2:
            g = lut[n]
        else:
            iv = msb32(n)
            base = 4 * iv - 6
            frac = ((n << (11 - iv)) if iv < 11 else (n >> (iv - 11))) & 0x3FF
            r = (lut[base + 2] * frac) >> 5
            r += s32(((lut[base + 1] & 0xFFFFFFFF) << 5) & 0xFFFFFFFF)
            r *= frac
            r = (r + (1 << 14)) >> 15
            g = s16(r + lut[base])
        gain = g & 0xFFFFFFFF
        snr = (((v * gain) % 2**64) >> snr_shift) & 0xFFFFFFFF
        out.append((snr * snr) >> 20 if snr < (2 << 12) else (snr >> 6) - 64)
    return np.array(out, np.uint32)


def s32(v):
    return ((v + 2**31) & 0xFFFFFFFF) - 2**31


def ref_log(x, output_scale, correction_bits):
    lut = signal._LOG_LUT
    out = []
    for v in (int(t) for t in x):
        sc = (v << correction_bits) & 0xFFFFFFFF
        if sc <= 1:
            out.append(0)
            continue
        integer = msb32(sc) - 1
        frac = sc - (1 << integer)
        frac = frac << (16 - integer) if integer < 16 else frac >> (integer - 16)
        seg = frac >> 9
        c0, c1 = lut[seg], lut[seg + 1]
        fraction = frac + c0 + (((c1 - c0) * (frac - 512 * seg)) >> 16)
        log2 = ((integer << 16) + fraction) & 0xFFFFFFFF
        loge = ((45426 * log2 + 32768) >> 16) & 0xFFFFFFFF
        scaled = (((output_scale & 0xFFFFFFFF) * loge + 32768) & 0xFFFFFFFF) >> 16
        out.append(min(scaled, 32767))
    return np.array(out, np.int16)


# -- running one rebuilder on given inputs ---------------------------------------------------------
class _Builder:
    def __init__(self):
        self.state = {}

    def resource(self, key, create):
        if key not in self.state:
            self.state[key] = create()
        return self.state[key]


def _ctx(op, sg, inputs, builder=None):
    return SimpleNamespace(op=op, subgraph=sg, input=lambda i: tf.constant(inputs[i]),
                           in_tensor=lambda i: sg.tensors[op.inputs[i]], out_tensor=lambda i=0: sg.tensors[op.outputs[i]],
                           builder=builder or _Builder(), options={})


def _run(code, op, sg, inputs, builder=None):
    spec = registry.find(f"CUSTOM:{code}")
    assert spec is not None and spec.check(op, sg) == []
    return [np.asarray(v) for v in spec.fn(_ctx(op, sg, inputs, builder))]


def _fake(code, opts, shapes_in, types_in, shapes_out, types_out, consts=None):
    """A stand-alone op + subgraph for option values the corpus does not hold."""
    consts = consts or {}
    tensors, ins, outs = [], [], []
    dt = {"FLOAT32": np.float32, "INT16": np.int16, "INT32": np.int32, "UINT32": np.uint32, "UINT64": np.uint64}
    for k, (s, t) in enumerate(zip(shapes_in, types_in)):
        data = consts.get(k)
        tensors.append(SimpleNamespace(shape=tuple(s), type_name=t, is_constant=data is not None,
                                       data=lambda d=data: d, dtype=dt[t]))
        ins.append(len(tensors) - 1)
    for s, t in zip(shapes_out, types_out):
        tensors.append(SimpleNamespace(shape=tuple(s), type_name=t, is_constant=False, dtype=dt[t]))
        outs.append(len(tensors) - 1)
    op = SimpleNamespace(custom_code=code, flex_options=dict(opts), inputs=tuple(ins), outputs=tuple(outs), index=0)
    return op, SimpleNamespace(tensors=tensors, index=0)


def _signals(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return [
        rng.integers(-32768, 32768, n).astype(np.int16),
        rng.integers(-300, 300, n).astype(np.int16),
        (12000 * np.sin(2 * np.pi * 440 * t / 16000)).astype(np.int16),
        (32767 * np.sin(2 * np.pi * 1000 * t / 16000) + rng.normal(0, 100, n)).clip(-32768, 32767).astype(np.int16),
        np.full(n, -32768, np.int16),
        np.zeros(n, np.int16),
    ]


# -- per-op tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0, 5, 12, 15])
def test_window_multiplies_shifts_and_saturates(shift):
    rng = np.random.default_rng(shift)
    op, sg = _fake("SignalWindow", {"shift": shift}, [(2, 64), (64,)], ["INT16", "INT16"], [(2, 64)], ["INT16"])
    x = rng.integers(-32768, 32768, (2, 64)).astype(np.int16)
    w = rng.integers(-32768, 32768, 64).astype(np.int16)
    (y,) = _run("SignalWindow", op, sg, [x, w])
    assert y.dtype == np.int16
    for row in range(2):
        np.testing.assert_array_equal(y[row], ref_window(x[row], w, shift))


def test_fft_auto_scale_matches_maxabs16_including_int16_min():
    op, sg = _fake("SignalFftAutoScale", {}, [(48,)], ["INT16"], [(48,), ()], ["INT16", "INT32"])
    rng = np.random.default_rng(1)
    cases = _signals(48, 2) + [rng.integers(-40, 40, 48).astype(np.int16)]
    for pos in (0, 20, 47):  # -32768 first, in the middle, last (the int16 `max = -value` wraparound)
        x = rng.integers(-1000, 1000, 48).astype(np.int16)
        x[pos] = -32768
        cases.append(x)
        y = x.copy()
        y[pos + 1:] = np.sort(y[pos + 1:]) if pos < 47 else y[pos + 1:]
        cases.append(y)
    for positions in ((10, 30), (46,), (5, 6)):  # several resets; one element after; two in a row
        x = -rng.integers(1, 1000, 48).astype(np.int16)  # all negative: the element after the last reset wins
        x[list(positions)] = -32768
        cases.append(x)
    for x in cases:
        y, scale = _run("SignalFftAutoScale", op, sg, [x])
        ry, rs = ref_auto_scale(x)
        assert int(scale) == rs
        np.testing.assert_array_equal(y, ry)


@pytest.mark.parametrize("fft_length,length", [(512, 480), (256, 256), (64, 50), (8, 8)])
def test_rfft_is_bit_exact_kiss_fft_fixed16(fft_length, length):
    op, sg = _fake("SignalRfft", {"T": 7, "fft_length": fft_length}, [(length,)], ["INT16"],
                   [(fft_length + 2,)], ["INT16"])
    for x in _signals(length, fft_length):
        (y,) = _run("SignalRfft", op, sg, [x])
        np.testing.assert_array_equal(y, ref_rfft(x, fft_length))


def test_rfft_float_deviation_is_what_exactness_buys():
    """How far a float FFT would be (documented; the rebuilder is exact instead)."""
    x = _signals(480, 3)[2]
    op, sg = _fake("SignalRfft", {"T": 7, "fft_length": 512}, [(480,)], ["INT16"], [(514,)], ["INT16"])
    (y,) = _run("SignalRfft", op, sg, [x])
    f = np.fft.rfft(np.pad(x.astype(np.float64), (0, 32))) / 512
    approx = np.stack([f.real, f.imag], -1).reshape(-1)
    assert np.abs(y - approx).max() > 0.5  # fixed-point rounding differs from the float FFT


def test_rfft_refuses_float_variant_and_odd_radix():
    op, sg = _fake("SignalRfft", {"T": 1, "fft_length": 512}, [(480,)], ["FLOAT32"], [(514,)], ["FLOAT32"])
    assert "T=1" in registry.find("CUSTOM:SignalRfft").check(op, sg)[0]
    op, sg = _fake("SignalRfft", {"T": 7, "fft_length": 480}, [(480,)], ["INT16"], [(482,)], ["INT16"])
    assert any("radix" in p for p in registry.find("CUSTOM:SignalRfft").check(op, sg))
    op, sg = _fake("SignalRfft", {"T": 7, "fft_length": 512, "extra": 1}, [(480,)], ["INT16"], [(514,)], ["INT16"])
    assert any("unknown options" in p for p in registry.find("CUSTOM:SignalRfft").check(op, sg))


@pytest.mark.parametrize("start,end", [(0, 33), (5, 20), (7, 7)])
def test_energy_squares_bins_in_range(start, end):
    op, sg = _fake("SignalEnergy", {"start_index": start, "end_index": end}, [(66,)], ["INT16"], [(33,)], ["UINT32"])
    for x in _signals(66, 4):
        (y,) = _run("SignalEnergy", op, sg, [x])
        assert y.dtype == np.uint32
        np.testing.assert_array_equal(y, ref_energy(x, start, end, 33))


def test_filter_bank_accumulates_weights_and_unweights():
    rng = np.random.default_rng(5)
    n, k = 6, 40
    widths = rng.integers(0, 6, n + 1).astype(np.int16)
    fstart = np.array([rng.integers(0, k - int(w) + 1) for w in widths], np.int16)
    wstart = np.concatenate([[0], np.cumsum(widths[:-1])]).astype(np.int16)
    w = rng.integers(-4096, 4097, int(widths.sum())).astype(np.int16)  # negative weights wrap mod 2**64
    uw = rng.integers(0, 4097, int(widths.sum())).astype(np.int16)
    op, sg = _fake("SignalFilterBank", {"num_channels": n}, [(k,), w.shape, uw.shape, (n + 1,), (n + 1,), (n + 1,)],
                   ["UINT32"] + ["INT16"] * 5, [(n,)], ["UINT64"], consts={1: w, 2: uw, 3: fstart, 4: wstart, 5: widths})
    for x in (rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32), rng.integers(0, 1000, k).astype(np.uint32)):
        (y,) = _run("SignalFilterBank", op, sg, [x, w, uw, fstart, wstart, widths])
        np.testing.assert_array_equal(y, ref_filter_bank(x, w, uw, fstart, wstart, widths, n))


def test_filter_bank_memory_follows_the_bands_not_channels_times_bins(monkeypatch):
    """A file may declare 2**26 energy bins (measured: a dense channels x bins matrix took 12 GB in the
    check); the terms are kept sparse, and bands wider in total than the limit are refused by name."""
    from tflite_inverter.ops.custom import signal

    n, k = 4, 1 << 26
    widths = np.array([2, 3, 1, 2, 2], np.int16)
    fstart = np.array([0, 10, k // 2 % 30000, 5, 7], np.int16)
    wstart = np.concatenate([[0], np.cumsum(widths[:-1])]).astype(np.int16)
    w = np.arange(1, int(widths.sum()) + 1, dtype=np.int16)
    op, sg = _fake("SignalFilterBank", {"num_channels": n}, [(k,), w.shape, w.shape, (n + 1,), (n + 1,), (n + 1,)],
                   ["UINT32"] + ["INT16"] * 5, [(n,)], ["UINT64"], consts={1: w, 2: w, 3: fstart, 4: wstart, 5: widths})
    spec = registry.find("CUSTOM:SignalFilterBank")
    assert spec.check(op, sg) == []
    idx, _, chan = signal._filter_bank_terms(op, sg)
    assert idx.size == int(widths[1:].sum() + widths[:-1].sum()) and chan.max() < n
    monkeypatch.setattr(signal, "MAX_FILTER_BANK_TERMS", 10)
    assert spec.check(op, sg) == ["SignalFilterBank: the bands total 16 multiply-accumulate terms, more than 10"]


def test_square_root_rounds_like_sqrt32_and_sqrt64():
    rng = np.random.default_rng(6)
    vals = [0, 1, 2, 3, 4, 8, 2**32 - 1, 2**32, 2**32 + 1, 2**64 - 1, 2**63, 65535**2, 65535**2 + 65535,
            65535**2 + 65536, (2**32 - 1)**2, (2**32 - 1)**2 + 2**32 - 1, (2**32 - 1)**2 + 2**32 + 5]
    vals += [int(v) for v in rng.integers(0, 2**63, 30, dtype=np.uint64)] + [int(v) for v in rng.integers(0, 2**33, 30)]
    x = np.array(vals, np.uint64)
    op, sg = _fake("SignalFilterBankSquareRoot", {}, [x.shape, ()], ["UINT64", "INT32"], [x.shape], ["UINT32"])
    for bits in (0, 3, 15):
        (y,) = _run("SignalFilterBankSquareRoot", op, sg, [x, np.int32(bits)])
        np.testing.assert_array_equal(y, ref_sqrt(x, bits))


@pytest.mark.parametrize("clamping", [False, True])
def test_spectral_subtraction_keeps_noise_state_across_calls(clamping):
    o = {"alternate_one_minus_smoothing": 15401, "alternate_smoothing": 983, "clamping": clamping,
         "min_signal_remaining": 819, "num_channels": 10, "one_minus_smoothing": 15975, "smoothing": 409,
         "smoothing_bits": 10, "spectral_subtraction_bits": 14}
    op, sg = _fake("SignalFilterBankSpectralSubtraction", o, [(10,)], ["UINT32"], [(10,), (10,)], ["UINT32", "UINT32"])
    rng = np.random.default_rng(7)
    builder, noise = _Builder(), np.zeros(10, np.uint32)
    frames = [rng.integers(0, 5000, 10).astype(np.uint32) for _ in range(5)]
    frames += [np.zeros(10, np.uint32), rng.integers(0, 2**32, 10, dtype=np.uint64).astype(np.uint32)]
    for x in frames:
        out, est = _run("SignalFilterBankSpectralSubtraction", op, sg, [x], builder)
        r_out, noise = ref_spectral(o, x, noise)
        np.testing.assert_array_equal(out, r_out)
        np.testing.assert_array_equal(est, noise)


def _corpus_op(code):
    m = read_model(str(FLOAT_MODEL))
    op = next(o for o in m.main.operators if o.custom_code == code)
    return op, m.main


@needs_corpus
@pytest.mark.parametrize("snr_shift", [6, 0, 32])
def test_pcan_gain_lut_and_shrink(snr_shift):
    op, sg = _corpus_op("SignalPCAN")
    lut = np.asarray(sg.tensors[op.inputs[2]].data())
    op2, sg2 = _fake("SignalPCAN", {"snr_shift": snr_shift}, [(40,), (40,), lut.shape], ["UINT32", "UINT32", "INT16"],
                     [(40,)], ["UINT32"], consts={2: lut})
    rng = np.random.default_rng(8)
    for scale in (3, 2**10, 2**20, 2**32):
        x = rng.integers(0, scale, 40, dtype=np.uint64).astype(np.uint32)
        noise = rng.integers(0, scale, 40, dtype=np.uint64).astype(np.uint32)
        noise[:3] = [0, 1, 2]
        (y,) = _run("SignalPCAN", op2, sg2, [x, noise, lut])
        np.testing.assert_array_equal(y, ref_pcan(x, noise, lut, snr_shift))


@pytest.mark.parametrize("bits,scale", [(3, 64), (0, 1600), (8, 70000), (0, -5)])
def test_filter_bank_log_lut_interpolation(bits, scale):
    op, sg = _fake("SignalFilterBankLog", {"input_correction_bits": bits, "output_scale": scale}, [(60,)], ["UINT32"],
                   [(60,)], ["INT16"])
    rng = np.random.default_rng(9)
    x = np.concatenate([[0, 1, 2, 3, 2**31, 2**32 - 1], rng.integers(0, 2**32, 27, dtype=np.uint64),
                        rng.integers(0, 5000, 27)]).astype(np.uint32)
    (y,) = _run("SignalFilterBankLog", op, sg, [x])
    np.testing.assert_array_equal(y, ref_log(x, scale, bits))


# -- whole front end -------------------------------------------------------------------------------
def ref_model(model, frames):
    """A tiny interpreter over the IR: the signal references plus the builtins these models use."""
    sg = model.main
    noise: dict[int, np.ndarray] = {}
    results = []
    for frame in frames:
        v = {t.index: np.asarray(t.data()) for t in sg.tensors if t.is_constant}
        v[sg.inputs[0]] = frame
        for op in sg.operators:
            a = [v[i] for i in op.inputs]
            o = op.flex_options
            code = op.custom_code or op.name
            outs_t = [sg.tensors[i] for i in op.outputs]
            if code == "SignalWindow":
                r = [np.stack([ref_window(row, a[1], o["shift"]) for row in a[0].reshape(-1, a[0].shape[-1])])
                     .reshape(a[0].shape)]
            elif code == "SignalFftAutoScale":
                y, s = ref_auto_scale(a[0])
                r = [y, np.int32(s)]
            elif code == "SignalRfft":
                r = [ref_rfft(a[0], o["fft_length"])]
            elif code == "SignalEnergy":
                r = [ref_energy(a[0], o["start_index"], o["end_index"], outs_t[0].shape[0])]
            elif code == "SignalFilterBank":
                r = [ref_filter_bank(*a, o["num_channels"])]
            elif code == "SignalFilterBankSquareRoot":
                r = [ref_sqrt(a[0], int(a[1]))]
            elif code == "SignalFilterBankSpectralSubtraction":
                out, noise[op.index] = ref_spectral(o, a[0], noise.get(op.index, np.zeros(a[0].shape, np.uint32)))
                r = [out, noise[op.index]]
            elif code == "SignalPCAN":
                r = [ref_pcan(a[0], a[1], a[2], o["snr_shift"])]
            elif code == "SignalFilterBankLog":
                r = [ref_log(a[0], o["output_scale"], o["input_correction_bits"])]
            elif code == "CAST":
                r = [a[0].astype(outs_t[0].dtype)]
            elif code == "RESHAPE":
                r = [a[0].reshape(outs_t[0].shape)]
            elif code == "STRIDED_SLICE":
                r = [a[0][int(a[1][0]):int(a[2][0]):int(a[3][0])]]
            elif code == "CONCATENATION":
                r = [np.concatenate(a, axis=op.options["axis"])]
            elif code == "MUL":
                r = [(a[0] * a[1]).astype(outs_t[0].dtype)]
            elif code == "ADD":
                r = [(a[0] + a[1]).astype(outs_t[0].dtype)]
            elif code == "DIV":  # TruncateDiv lowered to an int32 DIV: truncation toward zero
                r = [(np.trunc(a[0] / a[1])).astype(outs_t[0].dtype)]
            elif code == "MINIMUM":
                r = [np.minimum(a[0], a[1])]
            elif code == "MAXIMUM":
                r = [np.maximum(a[0], a[1])]
            else:
                raise AssertionError(f"no reference for {code}")
            for i, x in zip(op.outputs, r):
                v[i] = np.asarray(x).astype(sg.tensors[i].dtype)
        results.append(v[sg.outputs[0]])
    return results


@needs_corpus
@pytest.mark.parametrize("path", [FLOAT_MODEL, INT8_MODEL], ids=["float", "int8"])
def test_audio_preprocessor_end_to_end_is_exact(path, tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    model = read_model(str(path))
    codes = {o.custom_code for o in model.main.operators if o.custom_code}
    assert codes == set(signal._OPTION_KEYS) - {"SignalFftAutoScale"} | {"SignalFftAutoScale"}
    convert(str(path), str(tmp_path / "sm"), verify=False)
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    key = next(iter(fn.structured_input_signature[1]))
    frames = [f.reshape(1, 480) for f in _signals(480, 11)[:4]] + [_signals(480, 11)[3].reshape(1, 480)] * 2
    want = ref_model(model, frames)
    for frame, w in zip(frames, want):  # state carries over frame to frame, like the reference
        (got,) = fn(**{key: tf.constant(frame)}).values()
        np.testing.assert_array_equal(got.numpy(), w)


def test_signal_ops_are_registered():
    for code in signal._OPTION_KEYS:
        spec = registry.find(f"CUSTOM:{code}")
        assert spec is not None and spec.family == "custom.signal"
