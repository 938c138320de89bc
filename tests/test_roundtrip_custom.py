"""Round trip of the rebuilt custom ops: SavedModel -> plain TFLiteConverter -> the original's ops.

``TFLite_Detection_PostProcess`` and ``MaxUnpooling2D`` (MediaPipe's and the perception kernel's,
also under LiteRT's name ``LiteRtMaxUnpooling2D``) are rebuilt inside ``experimental_implements``
composites that the converter turns back into the single custom op; each test compares the custom
code and the decoded options with the original's and runs the round-tripped model. The converter has
no composite for ``MaxPoolingWithArgmax2D``: its rebuild must come back as a few builtins that
compute the same values.
"""

from __future__ import annotations

import struct
import tempfile
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import make_module

from .helpers import run_interpreter, run_rebuilt
from .test_ops_custom import (
    SAME,
    VALID,
    build_model,
    custom_model,
    det_opts,
    detection_model,
    pool_opts,
    ref_max_pool_argmax,
    ref_unpool_mediapipe,
    ref_unpool_perception,
)

RNG = np.random.default_rng(7)
#: The builtins the MaxPoolingWithArgmax2D rebuild may come back as.
ARGMAX_BUILTINS = {"MAX_POOL_2D", "STRIDED_SLICE", "SPACE_TO_DEPTH", "PADV2", "GATHER", "RESHAPE", "ARG_MAX", "CAST",
                   "ADD"}


def round_trip(model: bytes) -> bytes:
    """Rebuild, save as a SavedModel and convert back with a plain TFLiteConverter."""
    module = make_module(read_model(model))
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(module.concrete))
        return conv.convert()


def implemented(model: bytes) -> list[str]:
    """The ``experimental_implements`` names of the functions the rebuilt graph calls."""
    module = make_module(read_model(model))
    lib = next(iter(module.concrete.values())).graph.as_graph_def().library
    return sorted(f.attr["_implements"].func.name or f.attr["_implements"].s.decode()
                  for f in lib.function if "_implements" in f.attr)


def run_signature(model: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a round-tripped model through its signature (its input order is the converter's)."""
    runner = Interpreter(model_content=model).get_signature_runner()
    return runner(**inputs)


def ops(model: bytes) -> list[str]:
    return [op.key for sg in read_model(model).subgraphs for op in sg.operators]


def pool_fields(op) -> tuple[int, ...]:
    """padding, stride_w, stride_h, filter_w, filter_h, activation of a raw TfLitePoolParams."""
    return struct.unpack_from("<6i", op.custom_options)


def only_custom(model: bytes):
    customs = [op for op in read_model(model).main.operators if op.name == "CUSTOM"]
    assert len(customs) == 1, ops(model)
    return customs[0]


# -- MaxUnpooling2D ------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,itype,padding,sw,sh,fw,fh", [
    ("MaxUnpooling2D", "FLOAT32", VALID, 2, 2, 2, 2),      # MediaPipe, as in hair_segmentation
    ("MaxUnpooling2D", "FLOAT32", SAME, 3, 2, 2, 3),       # MediaPipe, non-square
    ("MaxUnpooling2D", "INT32", SAME, 2, 3, 3, 2),         # TFLite perception kernel
    ("LiteRtMaxUnpooling2D", "INT32", VALID, 3, 2, 2, 2),  # the same kernel under LiteRT's name
])
def test_max_unpooling_round_trips_to_one_custom_op_with_same_options(code, itype, padding, sw, sh, fw, fh):
    x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
    if itype == "FLOAT32":
        idx = RNG.integers(0, fw * fh, size=x.shape).astype(np.float32) + 0.1
        ref = ref_unpool_mediapipe(x, idx, padding, sw, sh, fw, fh)
    else:
        oh = x.shape[1] * sh if padding == SAME else (x.shape[1] - 1) * sh + fh
        ow = x.shape[2] * sw if padding == SAME else (x.shape[2] - 1) * sw + fw
        idx = RNG.integers(0, oh * ow * 2, size=x.shape).astype(np.int32)
        ref = ref_unpool_perception(x, idx, padding, sw, sh, fw, fh)
    m = custom_model(code, [("x", list(x.shape), "FLOAT32"), ("i", list(x.shape), itype)],
                     [("o", list(ref.shape), "FLOAT32")], pool_opts(padding, sw, sh, fw, fh))
    np.testing.assert_array_equal(run_rebuilt(m, [x, idx])[0], ref)  # TF computes the op itself
    back = round_trip(m)
    assert ops(back) == ["CUSTOM:MaxUnpooling2D"]  # LiteRtMaxUnpooling2D returns under the TFLite name
    got = read_model(back).main.operators[0]
    assert pool_fields(got) == pool_fields(read_model(m).main.operators[0])
    assert len(got.custom_options) == 40  # the whole TfLitePoolParams, runtime scratch zeroed
    assert [read_model(back).main.tensors[i].type_name for i in got.inputs] == ["FLOAT32", itype]


# -- MaxPoolingWithArgmax2D -----------------------------------------------------------------------------
@pytest.mark.parametrize("padding,sw,sh,fw,fh,act,hw", [
    (VALID, 2, 2, 2, 2, 0, (6, 8)),  # windows tile the input: space-to-depth
    (VALID, 2, 2, 2, 2, 3, (5, 7)),  # tiles after dropping the last row/column
    (SAME, 2, 2, 3, 3, 1, (5, 7)),   # padded windows: gather from an input padded with -inf
    (VALID, 1, 2, 3, 2, 0, (6, 5)),  # overlapping, non-square windows
])
def test_max_pool_argmax_round_trips_to_few_builtins(padding, sw, sh, fw, fh, act, hw):
    h, w = hw
    x = (RNG.normal(size=(1, h, w, 3)) * 4).astype(np.float32)
    x[0, 0, :2, 0] = 9.0  # a tie: the first maximum in window order wins
    vals, idx = ref_max_pool_argmax(x, padding, sw, sh, fw, fh, act)
    m = custom_model("MaxPoolingWithArgmax2D", [("x", [1, h, w, 3], "FLOAT32")],
                     [("v", list(vals.shape), "FLOAT32"), ("i", list(vals.shape), "FLOAT32")],
                     pool_opts(padding, sw, sh, fw, fh, act))
    back = round_trip(m)
    hist = Counter(ops(back))
    assert set(hist) <= ARGMAX_BUILTINS and hist["MAX_POOL_2D"] == hist["ARG_MAX"] == 1, hist
    assert sum(hist.values()) <= 8, hist
    out = run_signature(back, {"x": x})
    np.testing.assert_array_equal(out["v"], vals)
    np.testing.assert_array_equal(out["i"], idx)


def pool_unpool_model(h: int, w: int, pool: bytes, unpool: bytes, oh: int, ow: int) -> bytes:
    return build_model(tensors=[("x", [1, h, w, 3], "FLOAT32"), ("v", [1, h // 2, w // 2, 3], "FLOAT32"),
                                ("i", [1, h // 2, w // 2, 3], "FLOAT32"), ("o", [1, oh, ow, 3], "FLOAT32")],
                       ops=[("CUSTOM:MaxPoolingWithArgmax2D", [0], [1, 2], None, None, pool),
                            ("CUSTOM:MaxUnpooling2D", [1, 2], [3], None, None, unpool)],
                       inputs=[0], outputs=[3])


def test_pool_then_unpool_round_trips_to_builtins_that_run_like_the_original():
    """The segmentation models' pair comes back as builtins only: XNNPACK, which runs MediaPipe's
    unpooling in the stock interpreter, reads its index input as the raw uint32 its own argmax pool
    writes, so a builtin pool feeding a custom unpool would give wrong values there."""
    pool = pool_opts(VALID, 2, 2, 2, 2)
    m = pool_unpool_model(6, 8, pool, pool, 6, 8)
    back = round_trip(m)
    hist = Counter(ops(back))
    assert not any(k.startswith("CUSTOM") for k in hist) and sum(hist.values()) <= 12, hist
    x = RNG.normal(size=(1, 6, 8, 3)).astype(np.float32)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = 9.0  # a tie inside a window
    ref = run_interpreter(m, [x])[0]
    np.testing.assert_array_equal(run_interpreter(back, [x])[0], ref)
    np.testing.assert_array_equal(run_rebuilt(m, [x])[0], ref)


def test_unpool_after_a_pool_with_another_window_stays_a_custom_op():
    """Indices of a 2x2 pool read by a 3x3 unpooling are no tile positions: the composite is kept."""
    m = pool_unpool_model(4, 4, pool_opts(VALID, 2, 2, 2, 2), pool_opts(VALID, 3, 3, 3, 3), 6, 6)
    x = RNG.normal(size=(1, 4, 4, 3)).astype(np.float32)
    vals, idx = ref_max_pool_argmax(x, VALID, 2, 2, 2, 2)
    np.testing.assert_array_equal(run_rebuilt(m, [x])[0], ref_unpool_mediapipe(vals, idx, VALID, 3, 3, 3, 3))
    assert implemented(m) == ["addons:MaxUnpooling2D"]


# -- TFLite_Detection_PostProcess -----------------------------------------------------------------------
#: The options the kernel reads, with its defaults, as float32/int/bool.
DET_INT = ("max_detections", "max_classes_per_detection", "num_classes")
DET_FLOAT = ("nms_score_threshold", "nms_iou_threshold", "y_scale", "x_scale", "h_scale", "w_scale")


def det_fields(op) -> dict:
    o = op.flex_options
    f = {k: int(o[k]) for k in DET_INT}
    f.update({k: np.float32(o[k]) for k in DET_FLOAT})
    f["use_regular_nms"] = bool(o.get("use_regular_nms", False))
    if f["use_regular_nms"]:  # only regular NMS reads it
        f["detections_per_class"] = int(o.get("detections_per_class", 100))
    return f


@pytest.mark.parametrize("regular,max_cls,background", [(False, 1, 1), (False, 3, 0), (True, 1, 1)])
def test_detection_postprocess_round_trips_to_one_custom_op_with_same_options(regular, max_cls, background):
    opts = det_opts(regular, max_cls, 4, detections_per_class=100, nms_score_threshold=0.35,
                    nms_iou_threshold=0.45, y_scale=8.0, x_scale=9.0, h_scale=4.0, w_scale=3.0)
    m = detection_model(40, 4, background, opts)
    back = round_trip(m)
    assert ops(back) == ["CUSTOM:TFLite_Detection_PostProcess"]
    assert det_fields(only_custom(back)) == det_fields(read_model(m).main.operators[0])
    x = [RNG.normal(size=(1, 40, 4)).astype(np.float32), RNG.uniform(size=(1, 40, 4 + background)).astype(np.float32)]
    ref = run_interpreter(m, x)
    got = run_signature(back, {"boxes": x[0], "scores": x[1]})
    for name, r in zip(("ob", "oc", "os", "on"), ref):
        np.testing.assert_array_equal(got[name], r)


def test_detection_postprocess_composite_only_when_it_keeps_detections_per_class():
    """The converter's composite drops detections_per_class (the kernel then uses 100): regular NMS
    with another value is built from plain ops, fast NMS (which ignores it) still as the composite."""
    regular = detection_model(20, 3, 1, det_opts(True, 1, 3, detections_per_class=4))
    fast = detection_model(20, 3, 1, det_opts(False, 1, 3, detections_per_class=4))
    assert implemented(regular) == []
    assert implemented(fast) == ["TFLite_Detection_PostProcess"]
