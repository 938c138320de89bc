"""Shape, layout and indexing rebuilders against the TFLite interpreter.

Models come from TFLiteConverter where it emits the op with the wanted options, and from
``tests/tflite_builder.py`` where it does not (SQUEEZE/EXPAND_DIMS, which the converter folds into
RESHAPE; every STRIDED_SLICE mask; the ``offset`` option; fused activations on CONCATENATION; RANK;
EMBEDDING_LOOKUP; legacy RESHAPE forms).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model

from .helpers import (
    assert_float_close,
    assert_quantized_close,
    converted,
    op_names,
    quantized_inputs,
    random_like,
    run_builtin,
    run_interpreter,
    run_rebuilt,
    to_tflite,
)
from .tflite_builder import build_model, decode_model, encode_model, set_op_options, single_op_model

F32 = tf.float32
I32 = tf.int32
S = tf.TensorSpec
_rng = np.random.default_rng(0)


# -- helpers ---------------------------------------------------------------------------------------


def check_float(fn, specs, op: str, inputs=None, atol: float = 1e-6) -> float:
    model = converted(fn, specs, op)
    return assert_float_close(model, inputs if inputs is not None else random_like(specs), rtol=0.0, atol=atol)


def check_int8(fn, specs, op: str, inputs=None) -> tuple[float, float]:
    """Full-integer model: these ops only move values, so the rebuilt outputs are bit exact."""
    model = converted(fn, specs, op, "int8")
    floats = inputs if inputs is not None else random_like(specs)
    worst, within1 = assert_quantized_close(model, quantized_inputs(model, floats), max_lsb=0, min_within_1=1.0)
    return worst, within1


single_op = single_op_model


def assert_exact(model: bytes, inputs) -> None:
    """Pure data movement: the rebuilt outputs equal the interpreter's bit for bit."""
    ref = run_interpreter(model, inputs)
    got = run_rebuilt(model, inputs)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype, (r.shape, g.shape, r.dtype, g.dtype)
        np.testing.assert_array_equal(g, r)


def arange(shape, dtype=np.float32) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) - 3).astype(dtype).reshape(shape)


# -- RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE ---------------------------------------------------------
def test_reshape_const_shape_with_stretch_dim():
    check_float(lambda x: tf.reshape(x, [3, -1]), [S([2, 3, 2])], "RESHAPE")


def test_reshape_shape_from_runtime_tensor():
    specs = [S([2, 6]), S([3], I32)]
    model = converted(lambda x, s: tf.reshape(x, s), specs, "RESHAPE")
    assert not read_model(model).main.tensors[read_model(model).main.operators[0].inputs[1]].is_constant
    assert_float_close(model, [arange([2, 6]), np.array([3, 2, 2], np.int32)], rtol=0, atol=0)


@pytest.mark.parametrize("new_shape,out_shape,in_shape", [([4, 3], [4, 3], [2, 6]), ([-1], [12], [2, 6]),
                                                          ([0], [], [1]), ([1, 1, 1], [1, 1, 1], [1])])
def test_reshape_from_new_shape_option_when_there_is_no_shape_input(new_shape, out_shape, in_shape):
    model = single_op("RESHAPE", [(in_shape, "FLOAT32", None)], [(out_shape, "FLOAT32")], {"new_shape": new_shape})
    assert_exact(model, [arange(in_shape)])


def test_reshape_ignores_a_shape_input_that_is_not_an_int32_vector():
    # TFLite reads the shape input only when it is an int32 vector, else the new_shape option.
    model = single_op("RESHAPE", [([2, 6], "FLOAT32", None), ([3], "INT64", np.array([12, 1, 1]))],
                      [([3, 4], "FLOAT32")], {"new_shape": [3, 4]})
    assert_exact(model, [arange([2, 6])])


def test_reshape_int8_and_int32():
    check_int8(lambda x: tf.reshape(x, [4, 3]), [S([2, 6])], "RESHAPE")
    check_float(lambda x: tf.reshape(x, [4, 3]), [S([2, 6], I32)], "RESHAPE")


@pytest.mark.parametrize("dims,in_shape,out_shape", [([1], [2, 1, 3, 1], [2, 3, 1]), ([-1], [2, 1, 3, 1], [2, 1, 3]),
                                                     ([], [2, 1, 3, 1], [2, 3]), ([0, 2], [1, 4, 1], [4])])
def test_squeeze_dims(dims, in_shape, out_shape):
    model = single_op("SQUEEZE", [(in_shape, "FLOAT32", None)], [(out_shape, "FLOAT32")], {"squeeze_dims": dims})
    assert_exact(model, [arange(in_shape)])


@pytest.mark.parametrize("dims,out_sig", [([2], [-1, 3]), ([], [-1, 3])])
def test_squeeze_with_dynamic_batch(dims, out_sig):
    # The converter turns every squeeze into RESHAPE, so the dynamic form is built directly.
    model = build_model(tensors=[("x", [1, 3, 1], "FLOAT32", None, None, {"shape_signature": [-1, 3, 1]}),
                                 ("y", [1, 3], "FLOAT32", None, None, {"shape_signature": out_sig})],
                        ops=[("SQUEEZE", [0], [1], None, {"squeeze_dims": dims})], inputs=[0], outputs=[1])
    assert_exact(model, [arange([4, 3, 1])])


@pytest.mark.parametrize("axis,axis_shape,out_shape", [(0, [], [1, 2, 3]), (-1, [], [2, 3, 1]), (1, [1], [2, 1, 3]),
                                                       (-2, [1], [2, 1, 3])])
def test_expand_dims_axis_scalar_or_vector(axis, axis_shape, out_shape):
    model = single_op("EXPAND_DIMS", [([2, 3], "FLOAT32", None), (axis_shape, "INT32", np.array(axis).reshape(axis_shape))],
                      [(out_shape, "FLOAT32")])
    assert_exact(model, [arange([2, 3])])


def test_expand_dims_runtime_axis():
    model = single_op("EXPAND_DIMS", [([2, 3], "FLOAT32", None), ([], "INT32", None)], [([2, 1, 3], "FLOAT32")])
    assert_exact(model, [arange([2, 3]), np.array(1, np.int32)])


@pytest.mark.parametrize("perm", [[1, 0, 2], [2, 0, 1], [0, 2, 1]])
def test_transpose_perms(perm):
    check_float(lambda x: tf.transpose(x, perm), [S([2, 3, 4])], "TRANSPOSE")


def test_transpose_int8_int32_and_5d():
    check_int8(lambda x: tf.transpose(x, [0, 3, 1, 2]), [S([1, 3, 4, 5])], "TRANSPOSE")
    check_float(lambda x: tf.transpose(x, [1, 0]), [S([3, 4], I32)], "TRANSPOSE")
    check_float(lambda x: tf.transpose(x, [4, 1, 0, 3, 2]), [S([1, 2, 3, 2, 2])], "TRANSPOSE")


# -- STRIDED_SLICE, SLICE -----------------------------------------------------------------------------
def strided_model(in_shape, begin, end, strides, dtype="FLOAT32", **opts):
    n = len(begin)
    out_shape = tf.strided_slice(tf.zeros(in_shape), begin, end, strides, **{k: v for k, v in opts.items()
                                                                              if k != "offset"}).shape
    return single_op("STRIDED_SLICE", [(in_shape, dtype, None), ([n], "INT32", np.array(begin)),
                                       ([n], "INT32", np.array(end)), ([n], "INT32", np.array(strides))],
                     [(list(out_shape), dtype)], opts)


MASK_CASES = {
    "plain": ([3, 4, 5], [1, 0, 1], [3, 4, 4], [1, 2, 1], {}),
    "begin_mask": ([3, 4, 5], [2, 1, 3], [3, 4, 5], [1, 1, 1], {"begin_mask": 0b101}),
    "end_mask": ([3, 4, 5], [1, 1, 1], [0, 0, 2], [1, 1, 1], {"end_mask": 0b011}),
    "begin_end_masks_negative_stride": ([3, 4, 5], [0, 0, 0], [0, 0, 0], [-1, 1, -2],
                                        {"begin_mask": 0b111, "end_mask": 0b111}),
    "negative_indices": ([3, 4, 5], [-2, -3, -1], [-1, -1, -6], [1, 1, -1], {}),
    "negative_stride_out_of_range": ([6, 4], [10, 3], [-10, -10], [-2, -1], {}),
    "shrink_one": ([3, 4, 5], [1, 0, 0], [2, 4, 5], [1, 1, 1], {"shrink_axis_mask": 0b001}),
    "shrink_negative_index": ([3, 4, 5], [0, -1, 0], [3, 0, 5], [1, 1, 1], {"shrink_axis_mask": 0b010}),
    "shrink_two": ([3, 4, 5], [2, 1, 0], [3, 2, 5], [1, 1, 1], {"shrink_axis_mask": 0b011}),
    "ellipsis_first": ([2, 3, 4, 5], [0, 1], [0, 3], [1, 1], {"ellipsis_mask": 0b01}),
    "ellipsis_middle": ([2, 3, 4, 5], [1, 0, 1], [2, 0, 5], [1, 1, 2], {"ellipsis_mask": 0b010}),
    "ellipsis_last": ([2, 3, 4, 5], [1, 0], [2, 0], [1, 1], {"ellipsis_mask": 0b10}),
    "new_axis_first": ([3, 4], [0, 1, 0], [1, 3, 4], [1, 1, 2], {"new_axis_mask": 0b001}),
    "new_axis_middle": ([3, 4], [1, 0, 0], [3, 1, 4], [1, 1, 1], {"new_axis_mask": 0b010}),
    "new_axis_and_shrink": ([3, 4], [1, 0, 2], [2, 1, 4], [1, 1, 1], {"new_axis_mask": 0b010, "shrink_axis_mask": 0b001}),
    "ellipsis_and_new_axis": ([2, 3, 4], [0, 0, 1], [0, 1, 3], [1, 1, 1], {"ellipsis_mask": 0b001, "new_axis_mask": 0b010}),
    "ellipsis_and_shrink": ([2, 3, 4], [0, 2], [0, 3], [1, 1], {"ellipsis_mask": 0b01, "shrink_axis_mask": 0b10}),
    "fewer_specs_than_dims": ([3, 4, 5], [1], [3], [1], {}),
    "all_masks": ([2, 3, 4, 5], [0, 1, 0, 0, 4], [0, 3, 1, 0, 0], [1, 1, 1, 1, -2],
                  {"begin_mask": 0b00001, "ellipsis_mask": 0b01000, "new_axis_mask": 0b00100,
                   "shrink_axis_mask": 0b00010, "end_mask": 0b10000}),
}


@pytest.mark.parametrize("case", sorted(MASK_CASES))
def test_strided_slice_masks(case):
    in_shape, begin, end, strides, opts = MASK_CASES[case]
    assert_exact(strided_model(in_shape, begin, end, strides, **opts), [arange(in_shape)])


def test_strided_slice_masks_int32_and_bool_inputs():
    in_shape, begin, end, strides, opts = MASK_CASES["all_masks"]
    assert_exact(strided_model(in_shape, begin, end, strides, "INT32", **opts), [arange(in_shape, np.int32)])
    assert_exact(strided_model(in_shape, begin, end, strides, "BOOL", **opts), [arange(in_shape) > 4])


OFFSET_CASES = {
    "positive": ([4, 6], [1, 2], [2, 3], [1, 1], {}),
    "negative_begin": ([4, 6], [-3, -4], [2, 4], [1, 1], {}),
    "strided": ([4, 9], [0, 1], [4, 7], [2, 3], {}),
    "negative_stride": ([4, 6], [3, 5], [-3, -5], [-1, -2], {}),
    "begin_mask": ([4, 6], [3, 4], [2, 3], [1, 1], {"begin_mask": 0b01}),
    "begin_mask_negative_stride": ([4, 6], [0, 0], [-2, -3], [-1, -1], {"begin_mask": 0b11}),
    "shrink": ([4, 6], [2, 1], [1, 4], [1, 1], {"shrink_axis_mask": 0b01}),
    "to_the_last_element": ([4, 6], [3, 0], [1, 6], [1, 1], {}),
}


@pytest.mark.parametrize("case", sorted(OFFSET_CASES))
def test_strided_slice_offset_option_end_is_a_size(case):
    in_shape, begin, size, strides, opts = OFFSET_CASES[case]
    n = len(begin)
    # The interpreter sizes the output from the sizes; give the expected shape for readability.
    model = single_op("STRIDED_SLICE", [(in_shape, "FLOAT32", None), ([n], "INT32", np.array(begin)),
                                        ([n], "INT32", np.array(size)), ([n], "INT32", np.array(strides))],
                      [([1], "FLOAT32")], dict(offset=True, **opts))
    assert read_model(model).main.operators[0].options["offset"] is True
    assert_exact(model, [arange(in_shape)])


def offset_model(begin, size, strides, const: bool) -> bytes:
    n = len(strides)
    b = None if not const else np.array(begin)
    e = None if not const else np.array(size)
    return single_op("STRIDED_SLICE", [([4, 6], "FLOAT32", None), ([n], "INT32", b), ([n], "INT32", e),
                                       ([n], "INT32", np.array(strides))], [([1, 1], "FLOAT32")], {"offset": True})


@pytest.mark.parametrize("begin,size", [([1, 1], [2, 2]), ([-2, 0], [2, 3]), ([0, -5], [4, 2])])
def test_strided_slice_offset_with_runtime_begin_and_size(begin, size):
    # The interpreter sizes an offset slice during Prepare from the `end` data, so it cannot run run-time
    # sizes (it reads unset memory); the reference is the same slice with constant begin/size.
    x = arange([4, 6])
    ref = run_interpreter(offset_model(begin, size, [1, 2], const=True), [x])[0]
    got = run_rebuilt(offset_model(begin, size, [1, 2], const=False),
                      [x, np.array(begin, np.int32), np.array(size, np.int32)])[0]
    np.testing.assert_array_equal(got, ref)


def test_strided_slice_offset_on_an_input_with_a_dynamic_dim():
    # Unknown input dims: begin is normalised with TF ops on the run-time shape instead of in numpy.
    model = build_model(tensors=[("x", [1, 6], "FLOAT32", None, None, {"shape_signature": [-1, 6]}),
                                 ("b", [2], "INT32", np.array([-2, 4])), ("e", [2], "INT32", np.array([2, -3])),
                                 ("s", [2], "INT32", np.array([1, -1])), ("y", [2, 3], "FLOAT32")],
                        ops=[("STRIDED_SLICE", [0, 1, 2, 3], [4], None, {"offset": True})], inputs=[0], outputs=[4])
    assert_exact(model, [arange([5, 6])])


def test_strided_slice_offset_patched_into_a_converted_model():
    model = converted(lambda x: tf.strided_slice(x, [1, 0], [2, 6], [1, 2]), [S([4, 6])], "STRIDED_SLICE")
    model = set_op_options(model, "STRIDED_SLICE", offset=True)  # end [2, 6] now means sizes
    assert run_interpreter(model, [arange([4, 6])])[0].shape == (2, 3)
    assert_exact(model, [arange([4, 6])])


def test_strided_slice_offset_with_ellipsis_is_refused():
    model = strided_model([2, 3, 4], [0, 1], [0, 1], [1, 1], ellipsis_mask=1)
    model = set_op_options(model, "STRIDED_SLICE", offset=True)
    with pytest.raises(UnsupportedOpError, match="offset"):
        run_rebuilt(model, [arange([2, 3, 4])])


def test_strided_slice_converted_python_slicing_float_int8_int32():
    fn = lambda x: x[1:, ::-2, 1:4]  # noqa: E731
    check_float(fn, [S([3, 5, 6])], "STRIDED_SLICE")
    check_int8(fn, [S([3, 5, 6])], "STRIDED_SLICE")
    check_float(fn, [S([3, 5, 6], I32)], "STRIDED_SLICE")


def test_strided_slice_runtime_begin_end():
    specs = [S([4, 6]), S([2], I32), S([2], I32)]
    model = converted(lambda x, b, e: tf.strided_slice(x, b, e, [1, 2], end_mask=1), specs, "STRIDED_SLICE")
    assert_float_close(model, [arange([4, 6]), np.array([1, -5], np.int32), np.array([0, 6], np.int32)],
                       rtol=0, atol=0)


@pytest.mark.parametrize("begin,size", [([1, 0, 2], [-1, 2, 3]), ([0, 1, 0], [2, -1, -1])])
def test_slice_sizes_including_minus_one(begin, size):
    check_float(lambda x: tf.slice(x, begin, size), [S([3, 4, 5])], "SLICE")


def test_slice_int8_and_runtime_begin():
    check_int8(lambda x: tf.slice(x, [1, 0, 2], [2, -1, 3]), [S([3, 4, 5])], "SLICE")
    specs = [S([3, 4]), S([2], I32)]
    model = converted(lambda x, b: tf.slice(x, b, [2, 2]), specs, "SLICE")
    assert_float_close(model, [arange([3, 4]), np.array([1, 2], np.int32)], rtol=0, atol=0)


DYNAMIC_BATCH = {
    "STRIDED_SLICE": lambda x: x[:, 1:, ::2],
    "CONCATENATION": lambda x: tf.concat([x, x * 2.0], -1),
    "GATHER": lambda x: tf.gather(x, [2, 0], axis=1),
    "SPLIT": lambda x: tf.split(x, 2, axis=2)[1],
    "PAD": lambda x: tf.pad(x, [[0, 0], [1, 0], [0, 2]]),
    "TILE": lambda x: tf.tile(x, [1, 2, 1]),
}


@pytest.mark.parametrize("op", sorted(DYNAMIC_BATCH))
def test_dynamic_batch_dimension(op):
    model = converted(DYNAMIC_BATCH[op], [S([None, 3, 4])], op)
    assert_float_close(model, [arange([5, 3, 4])], rtol=0, atol=0)


# -- CONCATENATION, PACK, UNPACK, SPLIT, SPLIT_V --------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenation_axis(axis):
    check_float(lambda a, b: tf.concat([a, b, a], axis), [S([2, 3, 2]), S([2, 3, 2])], "CONCATENATION")


def test_concatenation_fused_activation_is_refused():
    # TFLite's kernel rejects any fused activation on CONCATENATION (concatenation.cc requires NONE) while
    # the XNNPACK delegate ignores it, so such a model has no single meaning: the rebuilder refuses it.
    model = to_tflite(lambda a, b: tf.concat([a, b], 1), [S([2, 3]), S([2, 2])])
    model = set_op_options(model, "CONCATENATION", fused_activation_function="RELU6")
    with pytest.raises(UnsupportedOpError, match="RELU6"):
        run_rebuilt(model, random_like([S([2, 3]), S([2, 2])]))


def test_concatenation_int8_with_different_input_ranges_and_int32():
    cal = [[_rng.uniform(-1, 1, (2, 3)), _rng.uniform(-4, 4, (2, 2))] for _ in range(16)]
    specs = [S([2, 3]), S([2, 2])]
    model = to_tflite(lambda a, b: tf.concat([a, b], 1), specs, "int8", calibration=cal)
    assert "CONCATENATION" in op_names(model)
    assert_quantized_close(model, quantized_inputs(model, cal[0]), max_lsb=0, min_within_1=1.0)
    check_float(lambda a, b: tf.concat([a, b], 0), [S([2, 3], I32), S([1, 3], I32)], "CONCATENATION")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_pack_axis(axis):
    check_float(lambda a, b: tf.stack([a, b, a], axis), [S([2, 3]), S([2, 3])], "PACK")


def test_pack_int8_and_int32():
    check_int8(lambda a, b: tf.stack([a, b], 1), [S([2, 3]), S([2, 3])], "PACK")
    check_float(lambda a, b: tf.stack([a, b], 0), [S([3], I32), S([3], I32)], "PACK")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_unpack_axis(axis):
    check_float(lambda x: tf.unstack(x, axis=axis), [S([2, 3, 4])], "UNPACK")


def test_unpack_int8():
    check_int8(lambda x: tf.unstack(x, axis=1), [S([2, 3, 4])], "UNPACK")


@pytest.mark.parametrize("axis,num", [(0, 2), (1, 3), (-1, 2)])
def test_split_axis_is_input_zero(axis, num):
    model = converted(lambda x: tf.split(x, num, axis), [S([4, 6, 2])], "SPLIT")
    split_op = read_model(model).main.operators[0]
    assert read_model(model).main.tensors[split_op.inputs[0]].type_name == "INT32"  # the axis comes first
    assert_float_close(model, [arange([4, 6, 2])], rtol=0, atol=0)


def test_split_int8_and_int32():
    check_int8(lambda x: tf.split(x, 3, 1), [S([2, 6])], "SPLIT")
    check_float(lambda x: tf.split(x, 2, 0), [S([4, 3], I32)], "SPLIT")


@pytest.mark.parametrize("sizes,axis", [([1, -1, 2], 1), ([3, 1], 0), ([2, 4], -1)])
def test_split_v_sizes(sizes, axis):
    check_float(lambda x: tf.split(x, sizes, axis), [S([4, 6])], "SPLIT_V")


def test_split_v_int8():
    check_int8(lambda x: tf.split(x, [1, 3, 2], 1), [S([2, 6])], "SPLIT_V")


# -- TILE, BROADCAST_TO, BROADCAST_ARGS, PAD, PADV2, MIRROR_PAD -----------------------------------------
def test_tile_float_int8_int32():
    check_float(lambda x: tf.tile(x, [2, 1, 3]), [S([2, 3, 2])], "TILE")
    check_int8(lambda x: tf.tile(x, [1, 2]), [S([2, 3])], "TILE")
    check_float(lambda x: tf.tile(x, [3, 2]), [S([2, 3], I32)], "TILE")


def test_tile_runtime_multiples():
    specs = [S([2, 3]), S([2], I32)]
    model = converted(lambda x, m: tf.tile(x, m), specs, "TILE")
    assert_float_close(model, [arange([2, 3]), np.array([2, 3], np.int32)], rtol=0, atol=0)


def test_broadcast_to_const_and_runtime_shape():
    check_float(lambda x: tf.broadcast_to(x, [2, 3, 4]), [S([3, 1])], "BROADCAST_TO")
    specs = [S([3, 1]), S([3], I32)]
    model = converted(lambda x, s: tf.broadcast_to(x, s), specs, "BROADCAST_TO")
    assert_float_close(model, [arange([3, 1]), np.array([2, 3, 5], np.int32)], rtol=0, atol=0)


def test_broadcast_args():
    specs = [S([2], I32), S([3], I32)]
    model = converted(lambda a, b: tf.broadcast_dynamic_shape(a, b), specs, "BROADCAST_ARGS")
    assert_float_close(model, [np.array([3, 1], np.int32), np.array([2, 1, 4], np.int32)])


PADDINGS = [[1, 2], [0, 1], [2, 0]]


def test_pad_float_int8_int32():
    check_float(lambda x: tf.pad(x, PADDINGS), [S([2, 3, 2])], "PAD")
    check_int8(lambda x: tf.pad(x, PADDINGS), [S([2, 3, 2])], "PAD")
    check_float(lambda x: tf.pad(x, PADDINGS), [S([2, 3, 2], I32)], "PAD")


def test_pad_runtime_paddings():
    specs = [S([2, 3]), S([2, 2], I32)]
    model = converted(lambda x, p: tf.pad(x, p), specs, "PAD")
    assert_float_close(model, [arange([2, 3]), np.array([[1, 0], [2, 1]], np.int32)], rtol=0, atol=0)


def test_padv2_constant_value_float_and_int8():
    check_float(lambda x: tf.pad(x, PADDINGS, constant_values=2.5), [S([2, 3, 2])], "PADV2")
    check_int8(lambda x: tf.pad(x, PADDINGS, constant_values=0.5), [S([2, 3, 2])], "PADV2")


def test_padv2_runtime_constant_value():
    specs = [S([2, 3]), S([], F32)]
    model = converted(lambda x, c: tf.pad(x, [[1, 0], [0, 2]], constant_values=c), specs, "PADV2")
    assert_float_close(model, [arange([2, 3]), np.array(-7.5, np.float32)], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_mirror_pad_modes(mode):
    paddings = [[1, 2], [2, 1]] if mode == "REFLECT" else [[2, 2], [3, 1]]
    model = check_float(lambda x: tf.pad(x, paddings, mode=mode), [S([3, 4])], "MIRROR_PAD")
    assert model == 0.0
    check_int8(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 0], [0, 0]], mode=mode), [S([1, 3, 4, 2])], "MIRROR_PAD")


def test_mirror_pad_option_is_read():
    model = to_tflite(lambda x: tf.pad(x, [[1, 1], [2, 2]], mode="REFLECT"), [S([3, 4])])
    model = set_op_options(model, "MIRROR_PAD", mode="SYMMETRIC")
    ref = run_interpreter(model, [arange([3, 4])])[0]
    np.testing.assert_array_equal(ref, np.pad(arange([3, 4]), [[1, 1], [2, 2]], mode="symmetric"))
    assert_exact(model, [arange([3, 4])])


# -- GATHER, GATHER_ND, SCATTER_ND, DYNAMIC_UPDATE_SLICE, EMBEDDING_LOOKUP --------------------------------
GATHER_CASES = [  # (params shape, indices, axis, batch_dims)
    ([5, 3], [[4, 0], [1, 1]], 0, 0),
    ([2, 5, 3], [3, 0, 4], 1, 0),
    ([2, 3, 5], [4, 1], -1, 0),
    ([2, 5, 3], [[1, 4, 0], [3, 3, 2]], 1, 1),
    ([2, 3, 5], [[[4, 0], [1, 1], [2, 3]], [[0, 0], [4, 4], [3, 1]]], 2, 2),
    ([2, 5, 3], [[1, 4], [3, 3]], 1, -1),
]


@pytest.mark.parametrize("shape,indices,axis,batch_dims", GATHER_CASES)
def test_gather_axis_and_batch_dims(shape, indices, axis, batch_dims):
    idx = np.array(indices, np.int32)
    model = check_float(lambda x, i: tf.gather(x, i, axis=axis, batch_dims=batch_dims),
                        [S(shape), S(idx.shape, I32)], "GATHER", inputs=[arange(shape), idx])
    assert model == 0.0


def test_gather_int8_int32_params_and_const_table():
    idx = tf.constant([[2, 0], [1, 2]])
    check_int8(lambda x: tf.gather(x, idx, axis=1), [S([2, 3, 4])], "GATHER")
    table = tf.constant(arange([6, 3]))
    check_float(lambda i: tf.gather(table, i), [S([4], I32)], "GATHER", inputs=[np.array([5, 0, 2, 2], np.int32)])
    check_float(lambda x, i: tf.gather(x, i, axis=1), [S([2, 4], I32), S([3], I32)], "GATHER",
                inputs=[arange([2, 4], np.int32), np.array([3, 0, 1], np.int32)])


def test_gather_nd_float_and_int8():
    idx = np.array([[1, 0], [2, 3], [0, 1]], np.int32)
    check_float(lambda x, i: tf.gather_nd(x, i), [S([3, 4, 2]), S([3, 2], I32)], "GATHER_ND",
                inputs=[arange([3, 4, 2]), idx])
    check_float(lambda x, i: tf.gather_nd(x, i, batch_dims=0), [S([3, 4, 2]), S([2, 1], I32)], "GATHER_ND",
                inputs=[arange([3, 4, 2]), np.array([[2], [0]], np.int32)])
    check_int8(lambda x: tf.gather_nd(x, tf.constant(idx)), [S([3, 4, 2])], "GATHER_ND")


def test_scatter_nd_adds_duplicate_indices():
    specs = [S([3, 1], I32), S([3, 4])]
    check_float(lambda i, u: tf.scatter_nd(i, u, [5, 4]), specs, "SCATTER_ND",
                inputs=[np.array([[1], [3], [1]], np.int32), arange([3, 4])])


def test_scatter_nd_runtime_shape():
    specs = [S([2, 2], I32), S([2]), S([2], I32)]
    model = converted(lambda i, u, s: tf.scatter_nd(i, u, s), specs, "SCATTER_ND")
    assert_float_close(model, [np.array([[0, 1], [2, 2]], np.int32), np.array([5.0, -1.0], np.float32),
                               np.array([3, 4], np.int32)], rtol=0, atol=0)


def dus(x, u, i):
    return xla.dynamic_update_slice(x, u, i)


@pytest.mark.parametrize("start", [[1, 2], [3, -1], [-5, 9]])
def test_dynamic_update_slice_clamps_start_indices(start):
    specs = [S([4, 5]), S([2, 2]), S([2], I32)]
    check_float(dus, specs, "DYNAMIC_UPDATE_SLICE", inputs=[arange([4, 5]), -arange([2, 2]) - 10,
                                                             np.array(start, np.int32)])


def test_dynamic_update_slice_int32():
    check_float(dus, [S([4, 5], I32), S([2, 2], I32), S([2], I32)], "DYNAMIC_UPDATE_SLICE",
                inputs=[arange([4, 5], np.int32), np.full([2, 2], 9, np.int32), np.array([2, 3], np.int32)])


def test_embedding_lookup_float_table():
    table = arange([5, 3]) * 0.5
    model = single_op("EMBEDDING_LOOKUP", [([4], "INT32", None), ([5, 3], "FLOAT32", table)], [([4, 3], "FLOAT32")])
    assert_exact(model, [np.array([4, 0, 2, 4], np.int32)])


@pytest.mark.parametrize("per_row", [False, True])
def test_embedding_lookup_hybrid_int8_table(per_row):
    q = _rng.integers(-127, 128, size=(5, 2, 3)).astype(np.int8)
    scale = list(_rng.uniform(0.01, 0.1, 5)) if per_row else [0.05]
    quant = {"scale": scale, "zero_point": [0] * len(scale), "quantized_dimension": 0}
    model = single_op("EMBEDDING_LOOKUP", [([3], "INT32", None), ([5, 2, 3], "INT8", q, quant)],
                      [([3, 2, 3], "FLOAT32")])
    err = assert_float_close(model, [np.array([4, 1, 4], np.int32)], rtol=1e-6, atol=1e-7)
    assert err < 1e-6


# -- SPACE_TO_DEPTH, DEPTH_TO_SPACE, SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND, REVERSE_V2, REVERSE_SEQUENCE ----
@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth_and_depth_to_space_block_sizes(block):
    check_float(lambda x: tf.nn.space_to_depth(x, block), [S([1, 6, 6, 2])], "SPACE_TO_DEPTH")
    check_float(lambda x: tf.nn.depth_to_space(x, block), [S([1, 2, 3, 2 * block * block])], "DEPTH_TO_SPACE")


def test_space_to_depth_and_depth_to_space_int8():
    check_int8(lambda x: tf.nn.space_to_depth(x, 2), [S([1, 4, 4, 3])], "SPACE_TO_DEPTH")
    check_int8(lambda x: tf.nn.depth_to_space(x, 2), [S([1, 2, 2, 8])], "DEPTH_TO_SPACE")


@pytest.mark.parametrize("shape,block,pads", [([1, 4, 4, 3], [2, 2], [[0, 0], [2, 0]]),
                                              ([2, 5, 2, 1], [3, 1], [[1, 0], [0, 0]]), ([1, 4, 3], [2], [[1, 1]])])
def test_space_to_batch_nd_and_back(shape, block, pads):
    check_float(lambda x: tf.space_to_batch_nd(x, block, pads), [S(shape)], "SPACE_TO_BATCH_ND")
    bshape = [shape[0] * int(np.prod(block))] + shape[1:]
    check_float(lambda x: tf.batch_to_space(x, block, pads), [S(bshape)], "BATCH_TO_SPACE_ND")


def test_space_to_batch_nd_and_back_int8():
    check_int8(lambda x: tf.space_to_batch_nd(x, [2, 2], [[1, 1], [0, 2]]), [S([1, 4, 4, 2])], "SPACE_TO_BATCH_ND")
    check_int8(lambda x: tf.batch_to_space(x, [2, 2], [[1, 1], [0, 1]]), [S([4, 3, 3, 2])], "BATCH_TO_SPACE_ND")


@pytest.mark.parametrize("axis", [[0], [1], [-1], [1, 2]])
def test_reverse_v2_axes(axis):
    check_float(lambda x: tf.reverse(x, axis), [S([2, 3, 4])], "REVERSE_V2")


def test_reverse_v2_int8_and_int32():
    check_int8(lambda x: tf.reverse(x, [1]), [S([2, 3, 4])], "REVERSE_V2")
    check_float(lambda x: tf.reverse(x, [0]), [S([3, 2], I32)], "REVERSE_V2")


@pytest.mark.parametrize("seq_axis,batch_axis", [(1, 0), (0, 1), (2, 0)])
def test_reverse_sequence_axes(seq_axis, batch_axis):
    shape = [3, 4, 5]
    lengths = np.array([2, 0, 3, 1][:shape[batch_axis]], np.int32)
    specs = [S(shape), S([shape[batch_axis]], I32)]
    check_float(lambda x, n: tf.reverse_sequence(x, n, seq_axis=seq_axis, batch_axis=batch_axis), specs,
                "REVERSE_SEQUENCE", inputs=[arange(shape), lengths])


# -- SHAPE, RANK, FILL, ZEROS_LIKE, RANGE, ONE_HOT, MATRIX_DIAG, MATRIX_SET_DIAG, SPARSE_TO_DENSE ------------
@pytest.mark.parametrize("out_type", [I32, tf.int64])
def test_shape_out_type(out_type):
    model = converted(lambda x: tf.shape(x, out_type=out_type) * 2, [S([None, 3])], "SHAPE")
    assert read_model(model).main.operators[0].options["out_type"] == out_type.name.upper()
    assert_float_close(model, [arange([5, 3])])


def test_rank():
    model = single_op("RANK", [([2, 3, 4], "FLOAT32", None)], [([], "INT32")])
    assert_exact(model, [arange([2, 3, 4])])


def test_fill_runtime_dims_and_value():
    check_float(lambda d, v: tf.fill(d, v), [S([2], I32), S([])], "FILL",
                inputs=[np.array([2, 3], np.int32), np.array(1.5, np.float32)])
    check_float(lambda d, v: tf.fill(d, v), [S([3], I32), S([], I32)], "FILL",
                inputs=[np.array([1, 2, 2], np.int32), np.array(-4, np.int32)])


def test_zeros_like_float_and_int32():
    check_float(lambda x: tf.zeros_like(x) + x * 0.0, [S([None, 3])], "ZEROS_LIKE", inputs=[arange([2, 3])])
    check_float(lambda x: tf.zeros_like(x), [S([None, 3], I32)], "ZEROS_LIKE", inputs=[arange([2, 3], np.int32)])


@pytest.mark.parametrize("dtype,args", [(I32, (2, 11, 3)), (I32, (5, -4, -2)), (F32, (0.5, 3.0, 0.75))])
def test_range(dtype, args):
    specs = [S([], dtype)] * 3
    check_float(lambda a, b, c: tf.range(a, b, c), specs, "RANGE",
                inputs=[np.array(a, dtype.as_numpy_dtype) for a in args])


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_axis_and_values(axis):
    specs = [S([2, 3], I32)]
    check_float(lambda i: tf.one_hot(i, 4, on_value=2.5, off_value=-1.0, axis=axis), specs, "ONE_HOT",
                inputs=[np.array([[0, 3, 1], [5, -1, 2]], np.int32)])


def test_one_hot_runtime_depth_int_values():
    specs = [S([3], I32), S([], I32)]
    check_float(lambda i, d: tf.one_hot(i, d, on_value=7, off_value=0, dtype=tf.int32), specs, "ONE_HOT",
                inputs=[np.array([0, 2, 1], np.int32), np.array(3, np.int32)])


def test_matrix_diag_and_set_diag():
    check_float(lambda d: tf.linalg.diag(d), [S([2, 3])], "MATRIX_DIAG")
    check_float(lambda x, d: tf.linalg.set_diag(x, d), [S([2, 3, 4]), S([2, 3])], "MATRIX_SET_DIAG")
    check_float(lambda x, d: tf.linalg.set_diag(x, d), [S([4, 2]), S([2])], "MATRIX_SET_DIAG")


@pytest.mark.parametrize("scalar_value", [False, True])
def test_sparse_to_dense(scalar_value):
    idx = np.array([[0, 1], [2, 3], [1, 0]], np.int32)

    def fn(i, v):
        return tf.raw_ops.SparseToDense(sparse_indices=i, output_shape=[3, 4], sparse_values=v, default_value=0.25,
                                        validate_indices=True)

    vshape = [] if scalar_value else [3]
    check_float(fn, [S([3, 2], I32), S(vshape)], "SPARSE_TO_DENSE", inputs=[idx, arange(vshape) + 10])


def test_sparse_to_dense_1d_indices_int32_values():
    def fn(i, v):
        return tf.raw_ops.SparseToDense(sparse_indices=i, output_shape=[6], sparse_values=v, default_value=-1)

    check_float(fn, [S([3], I32), S([3], I32)], "SPARSE_TO_DENSE",
                inputs=[np.array([4, 0, 2], np.int32), np.array([7, 8, 9], np.int32)])


# -- SELECT, SELECT_V2, WHERE, UNIQUE, TOPK_V2 ------------------------------------------------------------
@pytest.mark.parametrize("cond_shape", [[3, 2], [3]])
def test_select_v1_same_shape_or_rank_one_condition(cond_shape):
    specs = [S(cond_shape, tf.bool), S([3, 2]), S([3, 2])]
    check_float(lambda c, a, b: tf.raw_ops.Select(condition=c, x=a, y=b), specs, "SELECT")


def test_select_v2_broadcasts_and_int8():
    specs = [S([3, 1], tf.bool), S([3, 2]), S([1, 2])]
    check_float(lambda c, a, b: tf.where(c, a, b), specs, "SELECT_V2")
    cond = tf.constant([[True, False, True]])
    check_int8(lambda a, b: tf.where(cond, a, b), [S([2, 3]), S([2, 3])], "SELECT_V2")


@pytest.mark.parametrize("dtype", [tf.bool, F32, I32])
def test_where_coordinates_of_true_elements(dtype):
    x = (arange([3, 4]) % 3 == 0) if dtype == tf.bool else (arange([3, 4]) % 3).astype(dtype.as_numpy_dtype)
    check_float(lambda c: tf.where(c), [S([3, 4], dtype)], "WHERE", inputs=[x])


@pytest.mark.parametrize("out_idx", [I32, tf.int64])
def test_unique_values_and_index_type(out_idx):
    x = np.array([3.0, 1.0, 3.0, -2.0, 1.0, 7.0], np.float32)
    check_float(lambda v: tf.unique(v, out_idx=out_idx), [S([6])], "UNIQUE", inputs=[x])


def test_unique_int32():
    check_float(lambda v: tf.unique(v), [S([5], I32)], "UNIQUE", inputs=[np.array([4, 4, 0, 9, 0], np.int32)])


def test_topk_const_and_runtime_k():
    x = _rng.permutation(15).astype(np.float32).reshape(3, 5)  # no ties
    check_float(lambda v: tf.math.top_k(v, 3), [S([3, 5])], "TOPK_V2", inputs=[x])
    check_float(lambda v, k: tf.math.top_k(v, k), [S([3, 5]), S([], I32)], "TOPK_V2",
                inputs=[x, np.array(2, np.int32)])
    check_float(lambda v: tf.math.top_k(v, 2), [S([2, 4], I32)], "TOPK_V2",
                inputs=[_rng.permutation(8).astype(np.int32).reshape(2, 4)])


def test_topk_int8():
    x = ((_rng.permutation(20) - 10) / 10.0).astype(np.float32).reshape(4, 5)
    check_int8(lambda v: tf.math.top_k(v, 2)[0], [S([4, 5])], "TOPK_V2", inputs=[x])


# -- the builder itself -------------------------------------------------------------------------------
def test_builder_writes_any_option_and_multi_op_graphs():
    """A two-op model built from scratch: options by name, enum values by name, shared tensors."""
    model = build_model(
        tensors=[("x", [2, 3], "FLOAT32"), ("y", [2, 3], "FLOAT32"), ("sum", [2, 3], "FLOAT32"),
                 ("shape", [2], "INT32", np.array([3, 2])), ("out", [3, 2], "FLOAT32")],
        ops=[("ADD", [0, 1], [2], None, {"fused_activation_function": "RELU6"}), ("RESHAPE", [2, 3], [4])],
        inputs=[0, 1], outputs=[4])
    m = read_model(model).main
    assert [o.name for o in m.operators] == ["ADD", "RESHAPE"]
    assert m.operators[0].options["fused_activation_function"] == "RELU6"
    x, y = arange([2, 3]) * 2, -arange([2, 3]) * 0.5
    ref = run_interpreter(model, [x, y])[0]
    np.testing.assert_array_equal(ref, np.clip(x + y, 0, 6).reshape(3, 2))
    assert_exact(model, [x, y])


def test_builder_decode_encode_round_trip_keeps_the_model():
    model = to_tflite(lambda x: tf.nn.relu(tf.reshape(x, [3, 4])), [S([2, 6])])
    again = encode_model(decode_model(model))
    assert op_names(again) == op_names(model)
    x = arange([2, 6])
    np.testing.assert_array_equal(run_interpreter(again, [x])[0], run_interpreter(model, [x])[0])


# -- refusals ---------------------------------------------------------------------------------------
REFUSED = {
    "mirror_pad_mode": (single_op, ("MIRROR_PAD", [([3, 4], "FLOAT32", None), ([2, 2], "INT32", np.ones((2, 2)))],
                                    [([5, 6], "FLOAT32")], {"mode": 7}), "mirror pad mode"),
    "shape_out_type": (single_op, ("SHAPE", [([3, 4], "FLOAT32", None)], [([2], "INT32")], {"out_type": "FLOAT32"}),
                       "out_type FLOAT32"),
    "unique_idx_out_type": (single_op, ("UNIQUE", [([4], "FLOAT32", None)], [([4], "FLOAT32"), ([4], "INT32")],
                                        {"idx_out_type": "INT16"}), "idx_out_type INT16"),
    "where_on_zero_point": (single_op, ("WHERE", [([4], "INT8", None, {"scale": [0.1], "zero_point": [3]})],
                                        [([4, 1], "INT64")]), "zero point"),
    "dilate_runtime_factors": (single_op, ("DILATE", [([3, 4], "FLOAT32", None), ([2], "INT32", None),
                                                      ([], "FLOAT32", np.array(0.5))], [([5, 7], "FLOAT32")]),
                               "run-time dilation factors"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_option_values_without_a_faithful_rebuild_are_refused(case):
    make, args, message = REFUSED[case]
    model = make(*args)
    with pytest.raises(UnsupportedOpError, match=message):
        run_rebuilt(model, [np.zeros(read_model(model).main.tensors[0].shape, np.float32)])


def test_builder_custom_ops_second_options_union_subgraphs_and_signatures():
    body = [("a", [2], "FLOAT32"), ("b", [2], "FLOAT32")]
    model = build_model(
        tensors=[("x", [2], "FLOAT32"), ("y", [2], "FLOAT32"), ("z", [4], "FLOAT32")],
        ops=[("CUSTOM:MyOp", [0], [1], None, None, b"\x01\x02\x03"),
             ("STABLEHLO_CONCATENATE", [0, 1], [2], None, {"dimension": 0}, None, 2)],
        inputs=[0], outputs=[2],
        subgraphs=[{"tensors": body, "ops": [("RELU", [0], [1])], "inputs": [0], "outputs": [1], "name": "body"}],
        signature_defs=[{"signature_key": "run", "subgraph_index": 0, "inputs": [{"name": "in", "tensor_index": 0}],
                         "outputs": [{"name": "out", "tensor_index": 2}]}])
    m = read_model(model)
    custom, hlo = m.main.operators
    assert custom.key == "CUSTOM:MyOp" and custom.custom_options == b"\x01\x02\x03"
    assert hlo.name == "STABLEHLO_CONCATENATE" and hlo.version == 2
    assert hlo.options_type == "StablehloConcatenateOptions" and hlo.options == {"dimension": 0}
    assert [o.name for o in m.subgraphs[1].operators] == ["RELU"] and m.subgraphs[1].name == "body"
    assert m.signatures[0].key == "run" and m.signatures[0].inputs == (("in", 0),)
    with pytest.raises(ValueError, match="no field"):
        build_model(tensors=[("x", [2], "FLOAT32")], ops=[("SQUEEZE", [0], [0], None, {"squeeze_dim": [0]})])


def test_gather_int16_and_int64_indices():
    for itype, npt in [("INT16", np.int16), ("INT64", np.int64)]:
        model = single_op("GATHER", [([4, 3], "FLOAT32", None), ([3], itype, None)], [([4, 3], "FLOAT32")],
                          {"axis": 1})
        assert_exact(model, [arange([4, 3]), np.array([2, 0, 2], npt)])


def test_sparse_to_dense_int64_indices_with_int32_shape():
    model = single_op("SPARSE_TO_DENSE", [([2, 2], "INT64", None), ([2], "INT32", np.array([3, 3])),
                                          ([2], "FLOAT32", None), ([], "FLOAT32", np.array(-1.0))],
                      [([3, 3], "FLOAT32")])
    assert_exact(model, [np.array([[0, 2], [2, 1]], np.int64), np.array([5.0, 6.0], np.float32)])


@pytest.mark.parametrize("shape,factors", [([3, 4], [2, 3]), ([5], [3]), ([2, 3, 2], [1, 2, 1]), ([2, 2], [1, 1])])
def test_dilate_inserts_the_padding_value_between_elements(shape, factors):
    out = [(s - 1) * f + 1 for s, f in zip(shape, factors)]
    model = single_op("DILATE", [(shape, "FLOAT32", None), ([len(shape)], "INT32", np.array(factors)),
                                 ([], "FLOAT32", np.array(0.5))], [(out, "FLOAT32")])
    assert_exact(model, [arange(shape)])


def test_dilate_int8_padding_value_on_the_output_grid():
    q = {"scale": [0.25], "zero_point": [-3]}
    model = single_op("DILATE", [([2, 3], "INT8", None, q), ([2], "INT32", np.array([2, 2])),
                                 ([], "INT8", np.array(5), {"scale": [0.5], "zero_point": [1]})],
                      [([3, 5], "INT8", q)])
    x = np.arange(-3, 3, dtype=np.int8).reshape(2, 3)
    ref = run_interpreter(model, [x])[0]
    assert ref[0, 1] == 5  # the raw padding byte
    assert_quantized_close(model, [x], max_lsb=0, min_within_1=1.0)


def test_dilate_on_a_dynamic_batch():
    model = build_model(tensors=[("x", [1, 3], "FLOAT32", None, None, {"shape_signature": [-1, 3]}),
                                 ("d", [2], "INT32", np.array([2, 2])), ("v", [], "FLOAT32", np.array(-1.0)),
                                 ("y", [1, 5], "FLOAT32", None, None, {"shape_signature": [-1, 5]})],
                        ops=[("DILATE", [0, 1, 2], [3])], inputs=[0], outputs=[3])
    assert_exact(model, [arange([3, 3])])


# -- quantized data movement with other output parameters: raw integers, never requantized ---------
def _q(scale: float, zp: int) -> dict:
    return {"scale": [scale], "zero_point": [zp]}


def _i32(v) -> tuple:
    a = np.asarray(v, np.int32)
    return (list(a.shape), "INT32", a)


_INFO = {"INT8": np.iinfo(np.int8), "UINT8": np.iinfo(np.uint8), "INT16": np.iinfo(np.int16)}

#: (op, input shape, output shapes, parameter inputs, options, version); the data input is input 0,
#: except for SPLIT (axis first).
_MOVES = [
    ("RESHAPE", [2, 3, 4], [[6, 4]], [_i32([6, 4])], None, 1),
    ("SQUEEZE", [1, 4, 1, 3], [[4, 3]], [], {"squeeze_dims": [0, 2]}, 1),
    ("TRANSPOSE", [2, 3, 4, 5], [[5, 3, 2, 4]], [_i32([3, 1, 0, 2])], None, 1),
    ("SLICE", [4, 5, 6], [[2, 3, 4]], [_i32([1, 1, 2]), _i32([2, 3, 4])], None, 1),
    ("STRIDED_SLICE", [4, 5, 6], [[2, 2, 3]], [_i32([0, 1, 0]), _i32([4, 5, 6]), _i32([2, 2, 2])], {}, 1),
    ("TILE", [2, 3, 4], [[4, 3, 12]], [_i32([2, 1, 3])], None, 1),
    ("BROADCAST_TO", [1, 4, 1], [[3, 4, 5]], [_i32([3, 4, 5])], None, 2),
    ("REVERSE_V2", [3, 4, 5], [[3, 4, 5]], [_i32([1])], None, 1),
    ("GATHER", [5, 4, 3], [[3, 4, 3]], [_i32([4, 0, 2])], {"axis": 0}, 1),
    ("SPLIT_V", [3, 4, 6], [[3, 4, 2], [3, 4, 4]], [_i32([2, 4]), _i32(2)], {"num_splits": 2}, 1),
    ("SPLIT", [3, 4, 6], [[3, 4, 3], [3, 4, 3]], [], {"num_splits": 2}, 1),
    ("SPACE_TO_DEPTH", [1, 4, 6, 3], [[1, 2, 3, 12]], [], {"block_size": 2}, 1),
    ("DEPTH_TO_SPACE", [1, 2, 3, 12], [[1, 4, 6, 3]], [], {"block_size": 2}, 1),
    ("PAD", [1, 4, 5, 3], [[1, 6, 8, 3]], [_i32([[0, 0], [1, 1], [2, 1], [0, 0]])], None, 1),
    ("PADV2", [1, 4, 5, 3], [[1, 6, 8, 3]], [_i32([[0, 0], [1, 1], [2, 1], [0, 0]]), "pad_value"], None, 1),
]


def _move_model(op: str, dtype: str, qin: dict, qout: dict) -> tuple[bytes, list[int]] | None:
    entry = next(m for m in _MOVES if m[0] == op)
    _, shape, outs, params, opts, version = entry
    tensors = [("x", shape, dtype, None, qin)]
    for k, p in enumerate(params):
        if p == "pad_value":  # a code on the output grid, 7 steps above its zero point
            tensors.append(("v", [], dtype, np.array(qout["zero_point"][0] + 7), qout))
        else:
            tensors.append((f"p{k}", *p))
    ins = list(range(len(tensors)))
    if op == "SPLIT":
        tensors.append(("axis", [], "INT32", np.array(2, np.int32)))
        ins = [1, 0]
    first = len(tensors)
    tensors += [(f"y{k}", o, dtype, None, qout) for k, o in enumerate(outs)]
    outputs = list(range(first, len(tensors)))
    model = build_model(tensors=tensors, ops=[{"op": op, "inputs": ins, "outputs": outputs, "options": opts,
                                               "version": version}], inputs=[0], outputs=outputs)
    return model, shape


#: 8-bit ops XNNPACK (the default interpreter) refuses with other output parameters; the model fails.
_XNNPACK_REFUSES = {"TRANSPOSE", "SLICE", "SPLIT", "PAD", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE"}


@pytest.mark.parametrize("params", ["same", "other_scale", "other_zero_point"])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8", "INT16"])
@pytest.mark.parametrize("op", [m[0] for m in _MOVES])
def test_quantized_data_movement_copies_raw_integers(op, dtype, params):
    """Output parameters other than the input's: the interpreter's output holds the input's codes (so
    the real values change); the rebuild equals it bit for bit."""
    if dtype == "INT16" and op in ("SPACE_TO_DEPTH", "DEPTH_TO_SPACE"):
        return  # no int16 kernel (space_to_depth.cc / depth_to_space.cc refuse the type)
    off = 128 if dtype == "UINT8" else 0
    z = (lambda v: 0) if dtype == "INT16" else (lambda v: v + off)
    qin = _q(0.05, z(3))
    qout = {"same": qin, "other_scale": _q(0.02, z(-5)), "other_zero_point": _q(0.05, z(-60))}[params]
    if dtype == "INT16" and params == "other_zero_point":
        qout = _q(0.11, 0)  # int16 zero points are 0: a second scale instead
    model, shape = _move_model(op, dtype, qin, qout)
    info = _INFO[dtype]
    x = np.random.default_rng(3).integers(info.min, info.max + 1, size=shape).astype(info.dtype)
    if params != "same" and dtype != "INT16" and op in _XNNPACK_REFUSES:
        with pytest.raises(RuntimeError, match="failed to delegate"):
            run_interpreter(model, [x])
        return
    ref = run_interpreter(model, [x])
    got = run_rebuilt(model, [x])
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)
    if params != "same" and op not in ("PAD", "PADV2"):
        flat = np.concatenate([r.reshape(-1) for r in ref])
        assert set(flat.tolist()) <= set(x.reshape(-1).tolist())  # the codes themselves, not requantized


@pytest.mark.parametrize("seed", range(6))
def test_uint8_concatenation_with_differing_scales_is_bit_exact(seed):
    """uint8 inputs with quantization other than the output's are requantized by the kernel in float32;
    scale ratios such as 1/2 or 3 put many values exactly on rounding ties. Every code of each input."""
    rng = np.random.default_rng(seed)
    so = float(np.float32(rng.uniform(0.001, 0.1)))
    ratios = [0.5, 2.0, 1.5, 3.0, 1 / 3, 0.1, 0.7, 2.5, 1.25, 10.0, 0.25]
    scales = [so * rng.choice(ratios), so * rng.uniform(0.05, 5), so * rng.choice(ratios), so]
    zps = [int(z) for z in rng.integers(0, 256, 4)]
    zo = zps[3] if seed % 2 else int(rng.integers(0, 256))  # odd seeds: the last input is copied
    axis = seed % 2
    shapes = [[256, 1] if axis == 0 else [1, 256] for _ in scales]
    out_shape = [1024, 1] if axis == 0 else [1, 1024]
    q = [{"scale": [s], "zero_point": [z]} for s, z in zip(scales, zps)]
    model = single_op_model("CONCATENATION", [(sh, "UINT8", None, qq) for sh, qq in zip(shapes, q)],
                            [(out_shape, "UINT8", {"scale": [so], "zero_point": [zo]})],
                            {"axis": axis, "fused_activation_function": "NONE"}, "ConcatenationOptions")
    codes = np.arange(256, dtype=np.uint8)
    inputs = [codes.reshape(sh) for sh in shapes]
    ref = run_interpreter(model, inputs)[0].astype(int)
    np.testing.assert_array_equal(run_builtin(model, inputs)[0].astype(int), ref)  # the built-in kernel runs
    np.testing.assert_array_equal(run_rebuilt(model, inputs)[0].astype(int), ref)
