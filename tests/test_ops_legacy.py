"""Legacy builtin ops against the TFLite interpreter: BITCAST, FAKE_QUANT, LSH_PROJECTION,
HASHTABLE_LOOKUP, EMBEDDING_LOOKUP_SPARSE, SKIP_GRAM; CONCAT_EMBEDDINGS is reported as not rebuilt.

Only BITCAST comes from the converter (``tf.bitcast``); ``fake_quant_with_min_max_args`` converts to
QUANTIZE + DEQUANTIZE, and the others have no TensorFlow source at all, so their models are written
with ``tests/tflite_builder.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.model.reader import read_model
from tflite_inverter.ops import registry
from tflite_inverter.ops.legacy import skip_gram_patterns
from tflite_inverter.rebuild import make_module

from .helpers import assert_float_close, op_names, round_trip_ops, run_interpreter, run_rebuilt, to_tflite
from .tflite_builder import build_model, string_tensor_bytes

S = tf.TensorSpec
RNG = np.random.default_rng(0)


def single_op(op: str, tensors: list, inputs: list[int], outputs: list[int], options: dict | None = None,
              options_table: str | None = None, op_inputs: list[int] | None = None) -> bytes:
    """A model of one operator reading ``op_inputs`` (default: every tensor before the outputs)."""
    ins = op_inputs if op_inputs is not None else [i for i in range(len(tensors)) if i not in outputs]
    model = build_model(tensors=tensors, inputs=inputs, outputs=outputs,
                        ops=[(op, ins, outputs, options_table, options)])
    assert op_names(model) == [op]
    return model


def assert_same(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Rebuilt outputs equal the interpreter's exactly (shape, dtype and values)."""
    ref, got = run_interpreter(model, inputs), run_rebuilt(model, inputs)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype, (r.shape, g.shape, r.dtype, g.dtype)
        np.testing.assert_array_equal(g, r)
    return ref


# -- BITCAST ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,src,dst", [
    ([2, 3], tf.float32, tf.int32),  # same width
    ([2, 3], tf.float32, tf.uint8),  # wider input: gains a last dimension of 4
    ([3, 4], tf.int16, tf.int64),  # narrower input: loses its last dimension of 4
    ([5], tf.int8, tf.uint8),
])
def test_bitcast_from_converter_matches_interpreter_and_round_trips(shape, src, dst):
    model = to_tflite(lambda x: tf.bitcast(x, dst), [S(shape, src)])
    assert op_names(model) == ["BITCAST"]
    if src.is_floating:
        x = RNG.normal(size=shape).astype(src.as_numpy_dtype)
    else:
        info = np.iinfo(src.as_numpy_dtype)
        x = RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(src.as_numpy_dtype)
    ref = assert_same(model, [x])
    assert ref[0].dtype == dst.as_numpy_dtype
    if shape == [2, 3] and dst == tf.int32:
        assert round_trip_ops(model, via_saved_model=True) == ["BITCAST"]


def test_bitcast_of_quantized_tensors_reinterprets_their_integers():
    """An int8 tensor with a scale bitcast to uint8 with another scale: the raw bytes are copied."""
    tensors = [("x", [6], "INT8", None, {"scale": [0.05], "zero_point": [3]}),
               ("y", [6], "UINT8", None, {"scale": [0.1], "zero_point": [128]})]
    model = single_op("BITCAST", tensors, [0], [1], {}, "BitcastOptions")
    x = np.array([-128, -1, 0, 1, 5, 127], np.int8)
    out = assert_same(model, [x])
    np.testing.assert_array_equal(out[0], x.view(np.uint8))


# -- FAKE_QUANT ------------------------------------------------------------------------------------------
def fake_quant_model(shape: list[int], **options) -> bytes:
    return single_op("FAKE_QUANT", [("x", shape, "FLOAT32"), ("y", shape, "FLOAT32")], [0], [1], options)


def nudged_fake_quant(x: np.ndarray, lo: float, hi: float, bits: int, narrow: bool) -> np.ndarray:
    """TensorFlow's FakeQuantWithMinMaxArgs in numpy (float32 nudging, then round onto the grid)."""
    qmin, qmax = (1 if narrow else 0), (1 << bits) - 1
    scale = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(qmax - qmin))
    zp_from_min = np.float32(qmin) - np.float32(lo) / scale
    zp = qmin if zp_from_min < qmin else qmax if zp_from_min > qmax else np.round(zp_from_min)
    nmin, nmax = (np.float32(qmin) - np.float32(zp)) * scale, (np.float32(qmax) - np.float32(zp)) * scale
    c = np.clip(x, nmin, nmax) - nmin
    return (np.floor(c / scale + np.float32(0.5)) * scale + nmin).astype(np.float32)


@pytest.mark.parametrize("lo,hi,bits", [
    (-1.0, 1.0, 8),
    (-0.37, 2.61, 8),  # the zero point is nudged onto the grid
    (0.25, 3.0, 8),  # min above zero: the range is nudged to include 0
    (-6.0, -0.5, 8),  # max below zero
    (-1.5, 2.5, 4),
    (-3.0, 3.0, 2),
    (-2.0, 5.0, 16),
])
def test_fake_quant_matches_interpreter(lo, hi, bits):
    model = fake_quant_model([4, 16], min=lo, max=hi, num_bits=bits)
    x = RNG.uniform(lo - 1, hi + 1, size=(4, 16)).astype(np.float32)
    err = assert_float_close(model, [x], rtol=0, atol=1e-6)
    assert err <= 1e-6


def test_fake_quant_narrow_range_keeps_tensorflow_semantics():
    """The TFLite runtime refuses narrow_range=True; the rebuild keeps the TensorFlow op it came from."""
    model = fake_quant_model([64], min=-1.0, max=1.0, num_bits=8, narrow_range=True)
    x = np.linspace(-1.3, 1.3, 64, dtype=np.float32)
    with pytest.raises(RuntimeError, match="narrow_range"):
        run_interpreter(model, [x])
    got = run_rebuilt(model, [x])[0]
    np.testing.assert_allclose(got, nudged_fake_quant(x, -1.0, 1.0, 8, True), rtol=0, atol=1e-6)
    assert got.min() == pytest.approx(-1.0) and len(np.unique(got)) <= 255


def test_fake_quant_round_trip_becomes_quantize_dequantize():
    """TFLiteConverter lowers FakeQuantWithMinMaxArgs to QUANTIZE + DEQUANTIZE (it never emits FAKE_QUANT)."""
    model = fake_quant_model([8], min=-1.0, max=1.0, num_bits=8)
    assert round_trip_ops(model, via_saved_model=True) == ["QUANTIZE", "DEQUANTIZE"]


@pytest.mark.parametrize("options,why", [
    ({"min": -1.0, "max": 1.0, "num_bits": 1}, "num_bits 1"),
    ({"min": -1.0, "max": 1.0, "num_bits": 17}, "num_bits 17"),
    ({"min": 1.0, "max": 1.0, "num_bits": 8}, "min 1.0 is not below max"),
])
def test_fake_quant_refuses_options_tensorflow_cannot_express(options, why):
    m = read_model(fake_quant_model([4], **options)).main
    ok, reason = registry.support(m.operators[0], m)
    assert not ok and why in reason


# -- LSH_PROJECTION --------------------------------------------------------------------------------------
def lsh_model(kind: str, seeds: np.ndarray, x_shape: list[int], x_type: str, weight: bool,
              x_quant: dict | None = None) -> bytes:
    num_hash, num_bits = seeds.shape
    out_shape = [num_hash] if kind == "SPARSE" else [num_hash * num_bits]
    tensors = [("hash", list(seeds.shape), "FLOAT32", seeds), ("x", x_shape, x_type, None, x_quant)]
    inputs = [1]
    if weight:
        tensors.append(("w", [x_shape[0]], "FLOAT32"))
        inputs.append(2)
    tensors.append(("y", out_shape, "INT32"))
    return single_op("LSH_PROJECTION", tensors, inputs, [len(tensors) - 1], {"type": kind})


@pytest.mark.parametrize("kind", ["SPARSE", "DENSE"])
@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("x_shape,x_type", [([6, 2], "INT32"), ([5], "FLOAT32"), ([4, 3], "UINT8")])
def test_lsh_projection_matches_interpreter_bit_exactly(kind, weight, x_shape, x_type):
    seeds = RNG.normal(size=(4, 6)).astype(np.float32)
    model = lsh_model(kind, seeds, x_shape, x_type, weight)
    dtype = {"INT32": np.int32, "FLOAT32": np.float32, "UINT8": np.uint8}[x_type]
    for _ in range(3):
        if x_type == "FLOAT32":
            x = RNG.normal(size=x_shape).astype(dtype)
        else:
            x = RNG.integers(0, 200, size=x_shape).astype(dtype)
        feeds = [x] + ([RNG.normal(size=[x_shape[0]]).astype(np.float32)] if weight else [])
        out = assert_same(model, feeds)[0]
        if kind == "DENSE":
            assert set(np.unique(out)) <= {0, 1}
        else:
            assert np.all(out // (1 << 6) == np.arange(4))  # the per-hash offset i << num_bits


def test_lsh_projection_hashes_the_integers_of_a_quantized_input():
    seeds = RNG.normal(size=(3, 5)).astype(np.float32)
    model = lsh_model("SPARSE", seeds, [7], "INT8", False, {"scale": [0.02], "zero_point": [-4]})
    for _ in range(3):
        assert_same(model, [RNG.integers(-128, 128, size=[7]).astype(np.int8)])


@pytest.mark.parametrize("seeds_shape,why", [((2, 31), "overflows the int32"), ((3, 4), "type UNKNOWN")])
def test_lsh_projection_refuses_what_the_kernel_cannot_compute(seeds_shape, why):
    kind = "UNKNOWN" if "UNKNOWN" in why else "SPARSE"
    seeds = np.zeros(seeds_shape, np.float32)
    model = build_model(tensors=[("hash", list(seeds_shape), "FLOAT32", seeds), ("x", [3], "INT32"),
                                 ("y", [seeds_shape[0]], "INT32")],
                        ops=[("LSH_PROJECTION", [0, 1], [2], None, {"type": kind})], inputs=[1], outputs=[2])
    m = read_model(model).main
    ok, reason = registry.support(m.operators[0], m)
    assert not ok and why in reason


# -- HASHTABLE_LOOKUP ------------------------------------------------------------------------------------
def hashtable_model(keys: np.ndarray, values: np.ndarray, value_type: str, n_queries: int,
                    value_quant: dict | None = None) -> bytes:
    vshape = [len(keys)] if value_type == "STRING" else list(values.shape)
    tensors = [("query", [n_queries], "INT32"), ("keys", [len(keys)], "INT32", keys),
               ("values", vshape, value_type, values, value_quant),
               ("out", [n_queries] + vshape[1:], value_type, None, value_quant), ("hits", [n_queries], "UINT8")]
    return single_op("HASHTABLE_LOOKUP", tensors, [0], [3, 4])


@pytest.mark.parametrize("value_type", ["FLOAT32", "INT32", "STRING", "UINT8_QUANTIZED"])
def test_hashtable_lookup_matches_interpreter(value_type):
    keys = np.array([-40, -7, 0, 3, 11, 12, 250, 9000], np.int32)
    quant = None
    if value_type == "FLOAT32":
        values = RNG.normal(size=(8, 3)).astype(np.float32)
    elif value_type == "INT32":
        values = RNG.integers(-1000, 1000, size=(8, 2, 2)).astype(np.int32)
    elif value_type == "STRING":
        values = string_tensor_bytes([f"v{i}" for i in range(8)])
    else:  # a miss is integer 0, i.e. the real value -zero_point * scale
        values, value_type = RNG.integers(0, 256, size=(8, 2)).astype(np.uint8), "UINT8"
        quant = {"scale": [0.5], "zero_point": [100]}
    model = hashtable_model(keys, values, value_type, 10, quant)
    query = np.array([3, 4, -40, 9000, 9001, 0, -7, 12, -41, 11], np.int32)
    out, hits = assert_same(model, [query])
    np.testing.assert_array_equal(hits, [1, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    if value_type == "STRING":
        assert out[1] == b"" and out[0] == b"v3"


@pytest.mark.parametrize("keys", [
    [-2_000_000_000, -1_900_000_000, -1_800_000_000, -1_700_000_000, 1_000_000_000, 2_100_000_000],  # far apart
    [1, 3, 3, 3, 3, 8, 9],  # duplicates: the first probe that matches wins
    [5, 1, 9, 2, 7, 3, 0, 4],  # unsorted: keys off the probe path are missed
])
def test_hashtable_lookup_probes_like_the_kernels_binary_search(keys):
    keys = np.array(keys, np.int32)
    values = np.arange(2 * len(keys), dtype=np.float32).reshape(len(keys), 2)
    model = hashtable_model(keys, values, "FLOAT32", len(keys) + 2)
    query = np.concatenate([keys, np.array([-1, 6], np.int32)])
    _, hits = assert_same(model, [query])
    assert hits.tolist()[-2:] == [0, 0]


# -- EMBEDDING_LOOKUP_SPARSE -----------------------------------------------------------------------------
def els_model(combiner: str, n: int, rank: int, params: np.ndarray, out_shape: list[int]) -> bytes:
    tensors = [("ids", [n], "INT32"), ("indices", [n, rank], "INT32"), ("dense_shape", [rank], "INT32"),
               ("weights", [n], "FLOAT32"), ("params", list(params.shape), "FLOAT32", params),
               ("out", out_shape, "FLOAT32")]
    return single_op("EMBEDDING_LOOKUP_SPARSE", tensors, [0, 1, 2, 3], [5], {"combiner": combiner})


@pytest.mark.parametrize("combiner", ["SUM", "MEAN", "SQRTN"])
@pytest.mark.parametrize("rank,params_shape", [(2, (7, 3)), (3, (7, 2, 2)), (1, (5, 4))])
def test_embedding_lookup_sparse_matches_interpreter(combiner, rank, params_shape):
    params = RNG.normal(size=params_shape).astype(np.float32)
    if rank == 1:  # one bucket
        indices = np.array([[0], [1], [2]], np.int32)
        dense_shape = np.array([3], np.int32)
    elif rank == 2:  # rows 0, 1 and 3 of 5 filled, row 2 and 4 empty
        indices = np.array([[0, 0], [0, 1], [1, 0], [3, 0], [3, 1], [3, 2]], np.int32)
        dense_shape = np.array([5, 4], np.int32)
    else:
        indices = np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 2, 0], [1, 2, 3]], np.int32)
        dense_shape = np.array([2, 3, 4], np.int32)
    n = len(indices)
    ids = RNG.integers(0, params_shape[0], size=n).astype(np.int32)
    weights = RNG.uniform(0.2, 2.0, size=n).astype(np.float32)
    out_shape = list(dense_shape[:-1]) + list(params_shape[1:])
    model = els_model(combiner, n, rank, params, out_shape)
    ref = run_interpreter(model, [ids, indices, dense_shape, weights])[0]
    assert list(ref.shape) == out_shape
    err = assert_float_close(model, [ids, indices, dense_shape, weights], rtol=1e-6, atol=1e-6)
    assert err <= 1e-5


# -- SKIP_GRAM -------------------------------------------------------------------------------------------
def skip_gram_model(ngram: int, skip: int, include_all: bool) -> bytes:
    return single_op("SKIP_GRAM", [("text", [1], "STRING"), ("grams", [1], "STRING")], [0], [1],
                     {"ngram_size": ngram, "max_skip_size": skip, "include_all_ngrams": include_all})


SENTENCES = [  # bytes as latin-1: invalid UTF-8 must split like any other bytes
    " \xff\xfe x\xc3 y",
    "the quick brown fox jumps over",
    "  leading\tand\ttabs   between\nlines  ",
    "x leading word kept",
    " y lost first word",  # a leading space makes the kernel drop the first word
    " lonely",  # ... unless no other whitespace follows: then the whole string is one word
    "one",
    "",
    "a b",
    "\x0bvt\x0cff\rcr\x85nel\xa0nbsp",  # only the C locale's six whitespace characters split
]


@pytest.mark.parametrize("ngram,skip,include_all", [(1, 0, False), (2, 0, False), (2, 1, False), (3, 2, False),
                                                    (2, 1, True), (3, 1, True)])
def test_skip_gram_matches_interpreter(ngram, skip, include_all):
    model = skip_gram_model(ngram, skip, include_all)
    module = make_module(read_model(model))  # one rebuild for every sentence
    fn, plan = module.concrete["serving_default"], module.plans[0]
    for s in SENTENCES:
        text = np.array([s.encode("latin-1")], dtype=object)
        ref = run_interpreter(model, [text])[0]
        got = fn(**{plan.inputs[0].name: tf.constant(text)})[plan.outputs[0].name].numpy()
        assert got.tolist() == ref.tolist(), s
        if s == "the quick brown fox jumps over" and (ngram, skip, include_all) == (2, 1, False):
            assert ref.tolist()[:3] == [b"the quick", b"the brown", b"quick brown"]


def test_skip_gram_patterns_are_the_kernels_depth_first_order():
    assert skip_gram_patterns(2, 1, False) == [(0, 1), (0, 2)]
    assert skip_gram_patterns(3, 1, True) == [(0, 1, 2), (0, 1, 3), (0, 1), (0, 2, 3), (0, 2, 4), (0, 2), (0,)]


def test_skip_gram_refuses_an_empty_ngram_size():
    m = read_model(skip_gram_model(0, 1, False)).main
    ok, reason = registry.support(m.operators[0], m)
    assert not ok and "ngram_size 0" in reason


# -- CONCAT_EMBEDDINGS -----------------------------------------------------------------------------------
def test_concat_embeddings_is_reported_as_not_rebuilt_because_the_runtime_has_no_kernel():
    model = build_model(tensors=[("x", [2], "INT32"), ("y", [2], "FLOAT32")], inputs=[0], outputs=[1],
                        ops=[("CONCAT_EMBEDDINGS", [0], [1], None, {"num_channels": 1})])
    with pytest.raises(ValueError, match="CONCAT_EMBEDDINGS"):
        run_interpreter(model, [np.array([1, 2], np.int32)])
    m = read_model(model).main
    ok, reason = registry.support(m.operators[0], m)
    assert not ok and "no kernel" in reason


# -- a legacy text pipeline end to end ----------------------------------------------------------------------
def test_lsh_then_hashtable_model_converts_verifies_and_reloads(tmp_path):
    """LSH signatures looked up in a hash table (the shape of TFLite's early on-device text models):
    ``convert`` writes the SavedModel, verifies it against the interpreter, and the reload agrees."""
    from tflite_inverter.conversion.pipeline import convert

    seeds = RNG.normal(size=(2, 4)).astype(np.float32)
    keys = np.sort(RNG.choice(32, size=20, replace=False)).astype(np.int32)
    values = RNG.normal(size=(20, 3)).astype(np.float32)
    tensors = [("hash", [2, 4], "FLOAT32", seeds), ("x", [5], "INT32"), ("sig", [2], "INT32"),
               ("keys", [20], "INT32", keys), ("values", [20, 3], "FLOAT32", values), ("emb", [2, 3], "FLOAT32"),
               ("hits", [2], "UINT8")]
    model = build_model(tensors=tensors, inputs=[1], outputs=[5, 6, 2],
                        ops=[("LSH_PROJECTION", [0, 1], [2], None, {"type": "SPARSE"}),
                             ("HASHTABLE_LOOKUP", [2, 3, 4], [5, 6])])
    path = tmp_path / "legacy.tflite"
    path.write_bytes(model)
    result = convert(str(path), str(tmp_path / "out"), verify=True)
    assert result.passed
    loaded = tf.saved_model.load(str(tmp_path / "out"))
    x = np.array([3, 1, 4, 1, 5], np.int32)
    out = loaded.signatures["serving_default"](x=tf.constant(x))
    ref = run_interpreter(model, [x])
    for name, r in zip(["emb", "hits", "sig"], ref):
        np.testing.assert_array_equal(out[name].numpy(), r)
