"""Every real third-party model of ../shared/models: converted and matched, or refused by name.

Prints the table (run with ``-s`` to see it, or ``python benchmarks/corpus.py``). The files in
``EXPECTED_MATCH`` matched the interpreter when last measured; any of them that stops matching is a
regression. Every other file must end in a named status (unsupported ops listed, refused with the
reason, interpreter cannot run it) — never in a crash of ours.
"""

from __future__ import annotations

import pytest

from benchmarks.corpus import render, supervised_rows

from .conftest import corpus_files

#: TensorFlow's oneDNN graph rewrites in the child that runs the corpus: on ("1"; the default of CPUs
#: with AVX512_VNNI/BF16, AVX-VNNI or AMX) here, off in test_corpus_onednn_off.py (its own file, so
#: pytest-xdist runs the two settings on the two cores).
ONEDNN = "1"

#: Files of EXPECTED_MATCH that miss their rule with the oneDNN rewrites ON only, measured, with the
#: one output that misses (the rule is not loosened for them; they may also come out matching).
ONEDNN_ON_EDGE = {
    # segmentation logits: 0.191 from XNNPACK's output with oneDNN's float rounding, 0.182 without;
    # the bound is the measured spread of the interpreter's own two kernel sets, 0.185
    "mediapipe-git__pose_landmark_lite.tflite": "Identity_2",
}

#: Files that matched when last measured (python benchmarks/corpus.py, each output by the rule
#: conversion/rules.py states: exact / lsb / float within max(1e-4 x max|ref|, measured kernel spread)); grow it
#: as ops land. Not in it since the rules were made exact: the Edge TPU-slim DeepLab (argmax 99.97 %
#: equal) and the blockwise-quantized Qwen FC (3.3e-3 of max, kernel sets within 1.4e-3).
EXPECTED_MATCH: set[str] = {
    'tflite-micro__audio_preprocessor_float.tflite',  # against TFLite Micro (EXPECTED_MICRO)
    'tflite-micro__audio_preprocessor_int8.tflite',
    'MediaPipeUnityPlugin-git__face_blendshapes.tflite',
    'PINTO_model_zoo-git__082_meet_segm_full_v679.tflite',
    'PINTO_model_zoo-git__082_meet_segm_lite_v681.tflite',
    'ai-edge-quantizer-git__bmm_constant_input.tflite',
    'ai-edge-quantizer-git__conv_fc_mnist.tflite',
    'ai-edge-quantizer-git__conv_fc_mnist_srq_a8w8.tflite',
    'ai-edge-quantizer-git__dynamic_update_slice.tflite',
    'ai-edge-quantizer-git__embedding_lookup.tflite',
    'ai-edge-quantizer-git__insert_dequant_test.tflite',
    'ai-edge-quantizer-git__partly_quantized_mnist.tflite',
    'ai-edge-quantizer-git__sdpa_composite.tflite',
    'ai-edge-quantizer-git__single_conv2d_transpose_bias.tflite',
    'ai-edge-quantizer-git__toy_model_with_kv_cache_multi_signature.tflite',
    'ai-edge-quantizer-git__two_signatures_a8w8.tflite',
    'coral-test_data__deeplabv3_mnv2_dm05_pascal_quant.tflite',
    'coral-test_data__keras_lstm_mnist_ptq.tflite',
    'coral-test_data__mobilenet_quant_v1_224_head_layers.tflite',
    'coral-test_data__mobilenet_v1_0.25_128_quant.tflite',
    'coral-test_data__mobilenet_v1_1.0_224_quant_embedding_extractor.tflite',
    'coral-test_data__mobilenet_v2_1.0_224_quant.tflite',
    'coral-test_data__movenet_single_pose_lightning_ptq.tflite',
    'coral-test_data__split_concat.tflite',
    'coral-test_data__tf2_mobilenet_v2_1.0_224_ptq.tflite',
    'coral-test_data__traffic_model.tflite',
    'litert-git__attn_vec_einsum.tflite',
    'litert-git__blazeface_mlkit_v1.tflite',
    'litert-git__call_once_mul.tflite',
    'litert-git__custom_lstm.tflite',
    'litert-git__dynamic_shapes.tflite',
    'litert-git__fc_qat.tflite',
    'litert-git__ff.tflite',
    'litert-git__group_norm_2_groups_op.tflite',
    'litert-git__lstm.tflite',
    'litert-git__mixed16x8.tflite',
    'litert-git__mobilenet_like_model.tflite',
    'litert-git__multi_signatures.tflite',
    'litert-git__multi_subgraphs_while.tflite',
    'litert-git__nested_while.tflite',
    'litert-git__odml_sdpa_composite_mqa.tflite',
    'litert-git__pc_conv.tflite',
    'litert-git__resource_vars_calibrated.tflite',
    'litert-git__rope.tflite',
    'litert-git__simple_scatter_nd_op.tflite',
    'litert-git__simple_topk_op_runtime_k.tflite',
    'litert-git__string_input_model_with_signature.tflite',
    'litert-git__test_model_redux_precision.tflite',
    'litert-git__torchaudio_conformer.tflite',
    'litert-git__unidirectional_sequence_lstm.tflite',
    'litert-git__unidirectional_sequence_lstm_quantized.tflite',
    'mediapipe-git__custom_gesture_classifier.tflite',
    'mediapipe-git__face_detection_front_2019.tflite',
    'mediapipe-git__face_stylization_dummy.tflite',
    'mediapipe-git__feedback_tensor_test_model.tflite',
    'mediapipe-git__hair_segmentation.tflite',
    'mediapipe-git__hand_landmark_3d_2019.tflite',
    'mediapipe-git__hand_landmark_sparse_2020.tflite',
    'mediapipe-git__knift_float.tflite',
    'mediapipe-git__palm_detection_2020.tflite',
    'mediapipe-git__pose_landmark_lite.tflite',
    'mediapipe-git__test_two_signature_keys_model.tflite',
    'nxp-mcuxsdk-examples__cifarnet_quant_int8.tflite',
    'nxp-mcuxsdk-examples__ds_cnn_s.tflite',
    'tf-examples-git__recommendation_model_history10_top100.tflite',
    'tf-examples-git__recommendation_rnn_i10o100.tflite',
    'tf-examples__mobilenet_v2_035_96_embedder_with_metadata.tflite',
    'tf-examples__regex_one_embedding_with_metadata.tflite',
    'tflite-micro__dtln_noise_suppression.tflite',
    'tflite-micro__hello_world_float.tflite',
    'tflite-micro__hello_world_int8.tflite',
    'tflite-micro__keyword_scrambled.tflite',
    'tflite-micro__micro_speech_lstm.tflite',
    'tflite-micro__micro_speech_quantized.tflite',
    'tflite-micro__mobilenet_v2_quantized_1x3x224x224.tflite',
    'tflite-micro__trained_lstm.tflite',
    'tflite-micro__trained_lstm_int8.tflite',
}

#: Files verified only on inputs the tool could not make meaningful (status "weak", never a match),
#: with the input the reason names: the interpreter fails ("Invalid tensor size") on every loop
#: bound >= 2 of this WHILE with a forwarded string, so only 1 iteration is checked (it matched with
#: 0 iterations before the inputs were derived from the graph).
#: Files whose reference is TFLite Micro (the stock interpreter lacks their Signal* ops), measured.
EXPECTED_MICRO = {"tflite-micro__audio_preprocessor_float.tflite", "tflite-micro__audio_preprocessor_int8.tflite"}
EXPECTED_WEAK = {"litert-git__while_op_with_forwarding_input.tflite": "'num_iterations'"}

#: Compiled accelerator blobs and placeholders: the right answer is a refusal naming the op.
EXPECTED_REFUSED = {
    "coral-test_data__keras_lstm_mnist_ptq_edgetpu.tflite": "CUSTOM:edgetpu-custom-op",
    "coral-test_data__mobilenet_v1_0.25_128_quant_edgetpu.tflite": "CUSTOM:edgetpu-custom-op",
    "mediapipe-git__face-detector-quantized_edgetpu.tflite": "CUSTOM:edgetpu-custom-op",
    "tflite-micro__person_detect_vela.tflite": "CUSTOM:ethos-u",
    "nxp-mcuxsdk-examples__ds_cnn_s_npu_mcxn947.tflite": "CUSTOM:NeutronGraph",
    "nxp-mcuxsdk-examples__mobilenet_v1_0.25_128_quant_int8_npu_rt700.tflite": "CUSTOM:NeutronGraph",
    "coral-test_data__model_invoking_error.tflite": "CUSTOM:fake-op-double",
    "litert-git__double_flex.tflite": "CUSTOM:FlexDouble",
}


@pytest.fixture(scope="module")
def rows(request):
    files = corpus_files()
    if not files:
        pytest.skip("../shared/models is absent")
    onednn = request.module.ONEDNN
    result = supervised_rows(files, onednn)
    print(f"\nTF_ENABLE_ONEDNN_OPTS={onednn}\n" + render(result))
    return {r.file: r for r in result}


@pytest.mark.corpus
def test_no_corpus_file_crashes_the_tool(rows):
    crashed = {f: r.detail for f, r in rows.items() if r.status == "CRASH"}
    assert crashed == {}


@pytest.mark.corpus
def test_files_that_matched_still_match(rows, request):
    edge = ONEDNN_ON_EDGE if request.module.ONEDNN == "1" else {}
    regressed = {f: (rows[f].status, rows[f].detail) for f in EXPECTED_MATCH
                 if f in rows and rows[f].status != "match" and f not in edge}
    assert regressed == {}
    for f, output in edge.items():
        if f in rows and rows[f].status != "match":
            failing = [o["name"] for o in rows[f].outputs if not o["passed"]]
            assert rows[f].status == "MISMATCH" and failing == [output], (f, rows[f].detail)


@pytest.mark.corpus
def test_the_reference_is_named_and_tflite_micro_only_where_the_stock_interpreter_cannot(rows):
    for f, r in rows.items():
        if r.status != "match":
            continue
        want = "tflite-micro " if f in EXPECTED_MICRO else "ai-edge-litert "
        assert r.reference.startswith(want), (f, r.reference)


@pytest.mark.corpus
def test_weak_verifications_are_their_own_status_and_name_the_input(rows):
    for f, name in EXPECTED_WEAK.items():
        if f in rows:
            assert rows[f].status == "weak" and name in rows[f].detail, (f, rows[f].status, rows[f].detail)


@pytest.mark.corpus
def test_compiled_npu_blobs_and_placeholders_are_refused_by_name(rows):
    for f, op in EXPECTED_REFUSED.items():
        if f in rows:
            assert rows[f].status == "refused", (f, rows[f].status, rows[f].detail)
            assert op in rows[f].detail


@pytest.mark.corpus
def test_every_unconverted_file_says_why(rows):
    for f, r in rows.items():
        if r.status in ("unsupported", "refused", "rebuilt, no reference", "rebuild-error", "invalid", "not verified",
                        "weak"):
            assert len(r.detail) > 10, (f, r.status)
        if r.status == "unsupported":  # every op named, each with its reason: "OP[ xN]: why // OP2: why"
            for part in r.detail.split(" // "):
                op, _, why = part.partition(": ")
                assert op and len(why) > 10, (f, part)


@pytest.mark.corpus
def test_quantized_matches_meet_the_lsb_criterion(rows):
    for f, r in rows.items():
        if r.status != "match":
            continue
        for out in r.outputs:
            if out["max_lsb"] is not None:
                assert out["within_1_lsb"] >= 0.99 and out["max_lsb"] <= 2, (f, out)
