"""Sparse constants (densify / DENSIFY) and the misc family: NMS, segment reductions, BUCKETIZE,
RFFT2D and the random ops.

Random ops: TFLite and TF share the Philox generator, so seeded ops are compared exactly on their first
run; unseeded ones are nondeterministic on both sides and are checked statistically.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.errors import InvalidModelError, UnsupportedOpError
from tflite_inverter.model.ir import Buffer, Tensor
from tflite_inverter.model.reader import read_model
from tflite_inverter.ops.sparse import densify
from tflite_inverter.rebuild import check_supported

from .conftest import CORPUS_DIR
from .helpers import assert_float_close, run_interpreter, run_rebuilt, to_tflite
from .tflite_builder import build_model

RNG = np.random.default_rng(0)


def ops_of(model: bytes) -> list[str]:
    return [o.key for o in read_model(model).main.operators]


# -- densify --------------------------------------------------------------------------------------------
def sparse_tensor(shape, values, sparsity, dtype=np.float32, extra: bytes = b"") -> Tensor:
    """An IR tensor over a private buffer: ``values`` first, then ``extra`` bytes (for ubyte spans)."""
    data = np.asarray(values, dtype).tobytes()
    storage = data + extra
    return Tensor(index=7, name="w", shape=tuple(shape), shape_signature=tuple(shape), type_name="FLOAT32",
                  dtype=np.dtype(dtype), buffer=1, sparsity=sparsity, _storage=storage,
                  _span=Buffer(1, 0, len(data), False))


def dense_dim(n):
    return {"format": 0, "dense_size": n, "array_segments": {"type": None}, "array_indices": {"type": None}}


def csr_dim(segments, indices, kind="Int32Vector"):
    return {"format": 1, "dense_size": 0, "array_segments": {"type": kind, "values": list(segments)},
            "array_indices": {"type": kind, "values": list(indices)}}


def to_csr(dense: np.ndarray):
    """Row-CSR of a 2-D array: (values, segments, indices)."""
    vals, seg, idx = [], [0], []
    for row in dense:
        nz = np.nonzero(row)[0]
        idx += nz.tolist()
        vals += row[nz].tolist()
        seg.append(len(idx))
    return vals, seg, idx


@pytest.mark.parametrize("kind", ["Int32Vector", "Uint16Vector"])
def test_densify_csr_matches_dense_reference(kind):
    dense = RNG.normal(size=(5, 7)).astype(np.float32) * (RNG.uniform(size=(5, 7)) < 0.4)
    dense[2] = 0  # an empty row
    vals, seg, idx = to_csr(dense)
    t = sparse_tensor(dense.shape, vals, {"traversal_order": [0, 1], "block_map": None,
                                          "dim_metadata": [dense_dim(5), csr_dim(seg, idx, kind)]})
    np.testing.assert_array_equal(densify(t), dense)


def test_densify_uint8_spans_read_from_the_file():
    dense = np.array([[0, 1.5, 0], [2.5, 0, 3.5]], np.float32)
    vals, seg, idx = to_csr(dense)
    off = len(vals) * 4
    extra = bytes(seg) + bytes(idx)
    dim = {"format": 1, "dense_size": 0,
           "array_segments": {"type": "Uint8Vector", "values": {"offset": off, "length": len(seg)}},
           "array_indices": {"type": "Uint8Vector", "values": {"offset": off + len(seg), "length": len(idx)}}}
    t = sparse_tensor(dense.shape, vals, {"traversal_order": [0, 1], "block_map": None,
                                          "dim_metadata": [dense_dim(2), dim]}, extra=extra)
    np.testing.assert_array_equal(densify(t), dense)


def test_densify_block_sparse_and_transposed_traversal():
    # 4x4 in 2x2 blocks (TFLite's own example), then the same matrix traversed column-major.
    sp = {"traversal_order": [0, 1, 2, 3], "block_map": [0, 1],
          "dim_metadata": [dense_dim(2), csr_dim([0, 2, 3], [0, 1, 1]), dense_dim(2), dense_dim(2)]}
    t = sparse_tensor((4, 4), [1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6], sp)
    want = np.array([[1, 0, 2, 3], [0, 4, 0, 0], [0, 0, 5, 0], [0, 0, 0, 6]], np.float32)
    np.testing.assert_array_equal(densify(t), want)
    dense = RNG.normal(size=(3, 4)).astype(np.float32) * (RNG.uniform(size=(3, 4)) < 0.5)
    vals, seg, idx = to_csr(dense.T)
    t = sparse_tensor(dense.shape, vals, {"traversal_order": [1, 0], "block_map": None,
                                          "dim_metadata": [dense_dim(4), csr_dim(seg, idx)]})
    np.testing.assert_array_equal(densify(t), dense)


@pytest.mark.parametrize("bad,match", [
    ({"indices": [0, 9]}, "outside shape"),
    ({"segments": [0, 2, 1, 2]}, "non-decreasing"),
    ({"segments": [0, 1]}, "segments"),
    ({"values": [1.0]}, "buffer holds 1"),
    ({"order": [0, 0]}, "permutation"),
])
def test_densify_rejects_hostile_structures(bad, match):
    seg, idx, vals, order = [0, 1, 1, 2], [0, 2], [1.0, 2.0], [0, 1]
    seg = bad.get("segments", seg)
    idx = bad.get("indices", idx)
    vals = bad.get("values", vals)
    order = bad.get("order", order)
    t = sparse_tensor((3, 3), vals, {"traversal_order": order, "block_map": None,
                                     "dim_metadata": [dense_dim(3), csr_dim(seg, idx)]})
    with pytest.raises(InvalidModelError, match=match) as exc:
        densify(t)
    assert "'w'" in str(exc.value)


def sparse_model(dense: np.ndarray) -> bytes:
    """x + DENSIFY(sparse constant): the interpreter densifies the constant itself."""
    vals, seg, idx = to_csr(dense)
    sparsity = {"traversal_order": [0, 1], "dim_metadata": [
        {"format": "DENSE", "dense_size": dense.shape[0]},
        {"format": "SPARSE_CSR", "array_segments": ("Int32Vector", {"values": seg}),
         "array_indices": ("Uint8Vector", {"values": idx})}]}
    tensors = [("x", list(dense.shape), "FLOAT32"),
               ("w", list(dense.shape), "FLOAT32", np.asarray(vals, np.float32), None, {"sparsity": sparsity}),
               ("wd", list(dense.shape), "FLOAT32"), ("y", list(dense.shape), "FLOAT32")]
    return build_model(tensors=tensors, inputs=[0], outputs=[3],
                       ops=[("DENSIFY", [1], [2]), ("ADD", [0, 2], [3], "AddOptions", {})])


def test_densify_op_matches_interpreter():
    dense = RNG.normal(size=(6, 9)).astype(np.float32) * (RNG.uniform(size=(6, 9)) < 0.3)
    model = sparse_model(dense)
    assert ops_of(model) == ["DENSIFY", "ADD"]
    x = RNG.normal(size=dense.shape).astype(np.float32)
    err = assert_float_close(model, [x], rtol=0, atol=0)
    assert err == 0.0


@pytest.mark.corpus
def test_corpus_hand_landmark_sparse_converts_and_verifies(tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    path = CORPUS_DIR / "mediapipe-git__hand_landmark_sparse_2020.tflite"
    if not path.is_file():
        pytest.skip("hand_landmark_sparse is not in the corpus")
    check_supported(read_model(str(path)))  # every op rebuildable: a gap fails the test
    result = convert(str(path), str(tmp_path / "out"), verify=True)
    assert result.passed and result.checks


# -- non-max suppression ----------------------------------------------------------------------------------
NMS_BOXES = np.array([[0, 0, 1, 1], [0, 0, 1, 2], [2, 2, 3, 3], [2, 2, 3, 3.5], [5, 5, 6, 6], [5.1, 5, 6, 6],
                      [0, 0, 0.5, 0.5], [7, 7, 8, 8], [8, 8, 7, 7], [4, 4, 4, 5]], np.float32)
NMS_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.05, 0.3, 0.25, 0.2], np.float32)


@pytest.mark.parametrize("iou", [0.5, 0.7, 0.0, 1.0])
@pytest.mark.parametrize("version", [4, 5])
def test_non_max_suppression_matches_interpreter(iou, version):
    """Box 1 overlaps box 0 with IoU exactly 0.5 (TFLite suppresses at >=), box 8 is box 7 with its
    corners swapped, box 9 has zero area."""
    def fn(b, s):
        if version == 4:
            return tf.raw_ops.NonMaxSuppressionV4(boxes=b, scores=s, max_output_size=7, iou_threshold=iou,
                                                  score_threshold=0.1, pad_to_max_output_size=True)
        return tf.raw_ops.NonMaxSuppressionV5(boxes=b, scores=s, max_output_size=7, iou_threshold=iou,
                                              score_threshold=0.1, soft_nms_sigma=0.0, pad_to_max_output_size=True)

    model = to_tflite(fn, [tf.TensorSpec([10, 4], tf.float32), tf.TensorSpec([10], tf.float32)])
    assert ops_of(model) == [f"NON_MAX_SUPPRESSION_V{version}"]
    for boxes, scores in [(NMS_BOXES, NMS_SCORES),
                          (RNG.uniform(0, 4, size=(10, 4)).astype(np.float32), RNG.permutation(10) / 10 + 0.05)]:
        scores = scores.astype(np.float32)
        ref = run_interpreter(model, [boxes, scores])
        got = run_rebuilt(model, [boxes, scores])
        for r, g in zip(ref, got):
            np.testing.assert_array_equal(g, r)


def test_soft_non_max_suppression_is_refused():
    model = to_tflite(lambda b, s: tf.raw_ops.NonMaxSuppressionV5(
        boxes=b, scores=s, max_output_size=4, iou_threshold=0.5, score_threshold=0.0, soft_nms_sigma=0.5,
        pad_to_max_output_size=True), [tf.TensorSpec([6, 4], tf.float32), tf.TensorSpec([6], tf.float32)])
    with pytest.raises(UnsupportedOpError, match="soft NMS"):
        check_supported(read_model(model))


# -- segments, bucketize, rfft2d -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_segment_sum_matches_interpreter(dtype):
    model = to_tflite(lambda x, i: tf.math.segment_sum(x, i), [tf.TensorSpec([6, 3], dtype), tf.TensorSpec([6], tf.int32)])
    assert ops_of(model) == ["SEGMENT_SUM"]
    x = RNG.integers(-5, 5, size=(6, 3)).astype(dtype.as_numpy_dtype)
    ids = np.array([0, 0, 1, 2, 2, 3], np.int32)
    ref, got = run_interpreter(model, [x, ids])[0], run_rebuilt(model, [x, ids])[0]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("reduction", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_unsorted_segment_reductions_match_interpreter(reduction, dtype):
    fn = getattr(tf.math, f"unsorted_segment_{reduction}")
    model = to_tflite(lambda x, i: fn(x, i, 5), [tf.TensorSpec([7, 2], dtype), tf.TensorSpec([7], tf.int32)])
    assert ops_of(model) == [f"UNSORTED_SEGMENT_{reduction.upper()}"]
    x = RNG.integers(-4, 5, size=(7, 2)).astype(dtype.as_numpy_dtype)
    ids = np.array([3, 0, 3, 1, 0, 4, 3], np.int32)  # segment 2 is empty: the identity value
    ref, got = run_interpreter(model, [x, ids])[0], run_rebuilt(model, [x, ids])[0]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_bucketize_matches_interpreter(dtype):
    bounds = [-2.0, 0.0, 0.5, 3.0]
    model = to_tflite(lambda x: tf.raw_ops.Bucketize(input=x, boundaries=bounds), [tf.TensorSpec([12], dtype)])
    assert ops_of(model) == ["BUCKETIZE"]
    x = np.array([-3, -2, -1, 0, 0.25, 0.5, 1, 3, 4, -2.5, 2.9, 3.1]).astype(dtype.as_numpy_dtype)
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("fft", [[4, 8], [2, 4], [4, 2]])
def test_rfft2d_matches_interpreter(fft):
    model = to_tflite(lambda x: tf.signal.rfft2d(x, fft_length=fft), [tf.TensorSpec([2, 4, 8], tf.float32)])
    assert ops_of(model) == ["RFFT2D"]
    x = RNG.normal(size=(2, 4, 8)).astype(np.float32)
    ref, got = run_interpreter(model, [x])[0], run_rebuilt(model, [x])[0]
    assert ref.shape == got.shape and got.dtype == np.complex64
    assert np.abs(ref - got).max() < 1e-5 * np.abs(ref).max()


# -- random ------------------------------------------------------------------------------------------------
def random_model(seed, seed2, n=4):
    def fn(x):
        normal = tf.raw_ops.RandomStandardNormal(shape=tf.constant([n]), dtype=tf.float32, seed=seed, seed2=seed2)
        uniform = tf.raw_ops.RandomUniform(shape=tf.constant([n]), dtype=tf.float32, seed=seed, seed2=seed2)
        draws = tf.raw_ops.Multinomial(logits=tf.math.log(tf.constant([[0.2, 0.5, 0.3]])), num_samples=n,
                                       seed=seed, seed2=seed2)
        return x + normal, x + uniform, draws

    model = to_tflite(fn, [tf.TensorSpec([n], tf.float32)])
    assert {"RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL"} <= set(ops_of(model))
    return model


@pytest.mark.parametrize("seeds", [(7, 3), (1, 0), (0, 5)])
def test_seeded_random_ops_draw_the_interpreters_numbers(seeds):
    model = random_model(*seeds, n=16)
    x = np.zeros(16, np.float32)
    ref, got = run_interpreter(model, [x]), run_rebuilt(model, [x])
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


def test_unseeded_random_ops_follow_their_distributions():
    n = 20000
    model = random_model(0, 0, n=n)
    normal, uniform, draws = run_rebuilt(model, [np.zeros(n, np.float32)])
    assert abs(normal.mean()) < 0.05 and abs(normal.std() - 1) < 0.05
    assert abs(np.mean(normal ** 3)) < 0.1  # symmetric
    assert uniform.min() >= 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.02
    assert abs(uniform.var() - 1 / 12) < 0.005
    freq = np.bincount(draws.reshape(-1), minlength=3) / draws.size
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.02)
    again = run_rebuilt(model, [np.zeros(n, np.float32)])[0]
    assert not np.array_equal(again, normal)  # unseeded: a fresh stream per build, like TFLite


# -- hash tables ----------------------------------------------------------------------------------------------
def string_buffer(items: list[bytes]) -> bytes:
    """TFLite's string tensor layout: count, count + 1 offsets, then the bytes."""
    head = 4 * (len(items) + 2)
    offs = np.cumsum([head] + [len(s) for s in items]).astype("<i4")
    return np.int32(len(items)).tobytes() + offs.tobytes() + b"".join(items)


def test_hashtable_imports_once_and_keeps_the_first_duplicate():
    tensors = [("table", [], "RESOURCE"), ("k1", [3], "INT64", np.array([1, 1, 2], np.int64)),
               ("v1", [3], "STRING", string_buffer([b"first", b"second", b"two"])),
               ("k2", [1], "INT64", np.array([3], np.int64)), ("v2", [1], "STRING", string_buffer([b"three"])),
               ("query", [4], "INT64"), ("default", [], "STRING", string_buffer([b"none"])),
               ("found", [4], "STRING"), ("size", [1], "INT64")]
    ops = [("HASHTABLE", [], [0], "HashtableOptions", {"table_id": 7, "key_dtype": "INT64", "value_dtype": "STRING"}),
           ("HASHTABLE_IMPORT", [0, 1, 2], []), ("HASHTABLE_IMPORT", [0, 3, 4], []),
           ("HASHTABLE_FIND", [0, 5, 6], [7]), ("HASHTABLE_SIZE", [0], [8])]
    model = build_model(tensors=tensors, ops=ops, inputs=[5], outputs=[7, 8])
    q = np.array([1, 2, 3, 9], np.int64)
    ref, got = run_interpreter(model, [q]), run_rebuilt(model, [q])
    assert list(ref[0]) == [b"first", b"two", b"none", b"none"] and ref[1].tolist() == [2]
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


def test_hashtable_model_from_tensorflow_converts_and_verifies(tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    class Tables(tf.Module):
        def __init__(self):
            self.ids = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant([1, 5, 7], tf.int64), tf.constant(["a", "b", "c"])), "zz")
            self.names = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(["a", "b"]), tf.constant([10, 20], tf.int64)), -1)

        @tf.function(input_signature=[tf.TensorSpec([4], tf.int64)])
        def lookup(self, k):
            # (string inputs are left out: the verifier's input feeding does not handle them yet)
            return {"v": self.ids.lookup(k), "n": self.ids.size(), "w": self.names.lookup(self.ids.lookup(k))}

    m = Tables()
    tf.saved_model.save(m, str(tmp_path / "tf"), signatures={"serving_default": m.lookup})
    model = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "tf")).convert()
    ir = read_model(model)
    keys = {o.key for sg in ir.subgraphs for o in sg.operators}
    assert {"HASHTABLE", "HASHTABLE_IMPORT", "HASHTABLE_FIND", "HASHTABLE_SIZE", "CALL_ONCE"} <= keys
    path = tmp_path / "tables.tflite"
    path.write_bytes(model)
    result = convert(str(path), str(tmp_path / "out"), verify=True)
    assert result.passed and len(result.checks) == 9  # hash tables are state: 3 outputs on 3 calls
    loaded = tf.saved_model.load(str(tmp_path / "out"))
    out = loaded.signatures["serving_default"](k=tf.constant([5, 0, 1, 7], tf.int64))
    assert out["v"].numpy().tolist() == [b"b", b"zz", b"a", b"c"]
    assert out["w"].numpy().tolist() == [20, -1, 10, -1] and out["n"].numpy().tolist() == [3]
