"""Calibration data loaders: .npy, .npz, image folders, random; every bad input gives a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_inverter.errors import UsageError
from tflite_inverter.quantization.calibration import (
    MIN_SAMPLES,
    RANDOM_WARNING,
    InputSpec,
    load_calibration,
    parse_floats,
)

IMG = InputSpec("image", (1, 8, 6, 3), np.dtype(np.float32), aliases=("serving_default_image:0",))
IMG_DYN = InputSpec("image", (None, 8, 6, 3), np.dtype(np.float32))
FEAT = InputSpec("features", (1, 5), np.dtype(np.float32))
IDS = InputSpec("ids", (1, 4), np.dtype(np.int32))


def _save(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return str(p)


# -- .npy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [(10, 8, 6, 3), (10, 1, 8, 6, 3)], ids=["batch-axis", "sample-axis"])
def test_npy_splits_stacked_samples_into_full_input_shapes(tmp_path, layout):
    arr = np.random.default_rng(0).normal(size=layout).astype(np.float64)
    data = load_calibration(_save(tmp_path, "x.npy", arr), [IMG])
    assert data.kind == "npy" and len(data) == 10
    assert all(s[0].shape == (1, 8, 6, 3) and s[0].dtype == np.float32 for s in data.samples)
    np.testing.assert_allclose(data.samples[3][0].reshape(-1), arr[3].reshape(-1).astype(np.float32))


def test_npy_dynamic_batch_accepts_any_batch(tmp_path):
    data = load_calibration(_save(tmp_path, "x.npy", np.zeros((6, 8, 6, 3), np.float32)), [IMG_DYN])
    assert len(data) == 6 and data.samples[0][0].shape == (1, 8, 6, 3)


def test_npy_wrong_shape_names_input_and_expected_shape(tmp_path):
    path = _save(tmp_path, "x.npy", np.zeros((10, 8, 8, 3), np.float32))
    with pytest.raises(UsageError, match=r"input 'image' expects samples of shape \[1, 8, 6, 3\].*got an array of "
                       r"shape \[10, 8, 8, 3\]"):
        load_calibration(path, [IMG])


def test_npy_for_two_inputs_is_refused(tmp_path):
    path = _save(tmp_path, "x.npy", np.zeros((10, 1, 5), np.float32))
    with pytest.raises(UsageError, match=r"a \.npy holds one input, the model has 2 \('image', 'features'\)"):
        load_calibration(path, [IMG, FEAT])


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_npy_wrong_dtype_is_refused(tmp_path, dtype):
    path = _save(tmp_path, "x.npy", np.zeros((10, 8, 6, 3), dtype))
    with pytest.raises(UsageError, match="input 'image' is float32, the data is"):
        load_calibration(path, [IMG])


def test_integer_data_for_float_input_needs_normalization(tmp_path):
    arr = np.full((5, 8, 6, 3), 200, np.uint8)
    path = _save(tmp_path, "x.npy", arr)
    with pytest.raises(UsageError, match="pass float data, or --mean/--std"):
        load_calibration(path, [IMG])
    data = load_calibration(path, [IMG], mean=[127.5], std=[127.5])
    np.testing.assert_allclose(data.samples[0][0], (200 - 127.5) / 127.5, rtol=1e-6)


def test_too_few_samples_is_refused(tmp_path):
    path = _save(tmp_path, "x.npy", np.zeros((MIN_SAMPLES - 1, 8, 6, 3), np.float32))
    with pytest.raises(UsageError, match=f"{MIN_SAMPLES - 1} sample\\(s\\); at least {MIN_SAMPLES} are needed"):
        load_calibration(path, [IMG])


def test_samples_option_takes_the_first_n_and_refuses_more_than_available(tmp_path):
    path = _save(tmp_path, "x.npy", np.arange(12 * 5, dtype=np.float32).reshape(12, 1, 5))
    data = load_calibration(path, [FEAT], samples=5)
    assert len(data) == 5 and data.samples[-1][0][0, 0] == 20
    with pytest.raises(UsageError, match="--samples 20 asked for, only 12 available"):
        load_calibration(path, [FEAT], samples=20)


def test_integer_model_input_takes_integers_in_range(tmp_path):
    data = load_calibration(_save(tmp_path, "ids.npy", np.ones((5, 1, 4), np.int64)), [IDS])
    assert data.samples[0][0].dtype == np.int32
    with pytest.raises(UsageError, match="do not fit int32"):
        load_calibration(_save(tmp_path, "big.npy", np.full((5, 1, 4), 2**40, np.int64)), [IDS])
    with pytest.raises(UsageError, match="input 'ids' is int32, the data is float32"):
        load_calibration(_save(tmp_path, "f.npy", np.ones((5, 1, 4), np.float32)), [IDS])


def test_holdout_split_keeps_at_least_one_sample_back():
    from tflite_inverter.quantization.calibration import CalibrationData

    for n, held in ((4, 1), (10, 2), (100, 20)):
        data = CalibrationData([[np.zeros(1)] for _ in range(n)], "npy", "x")
        calib, back = data.split()
        assert len(back) == held and len(calib) == n - held


# -- .npz -----------------------------------------------------------------------------------------
def test_npz_keyed_by_input_name_and_alias(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, **{"serving_default_image:0": np.zeros((6, 8, 6, 3), np.float32),
                   "features": np.ones((6, 1, 5), np.float32)})
    data = load_calibration(str(p), [IMG, FEAT])
    assert data.kind == "npz" and len(data) == 6
    assert data.samples[0][0].shape == (1, 8, 6, 3) and data.samples[0][1].shape == (1, 5)


def test_npz_missing_input_names_it_and_lists_keys(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, image=np.zeros((6, 8, 6, 3), np.float32), other=np.zeros((6, 1, 5), np.float32))
    with pytest.raises(UsageError, match=r"no array for input 'features' \(expected shape \[1, 5\] float32.*"
                       r"the archive has: image, other"):
        load_calibration(str(p), [IMG, FEAT])


def test_npz_extra_array_is_refused(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, image=np.zeros((6, 8, 6, 3), np.float32), features=np.zeros((6, 1, 5), np.float32),
             labels=np.zeros(6))
    with pytest.raises(UsageError, match="array\\(s\\) 'labels' match no model input"):
        load_calibration(str(p), [IMG, FEAT])


def test_npz_different_sample_counts_are_refused(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, image=np.zeros((6, 8, 6, 3), np.float32), features=np.zeros((7, 1, 5), np.float32))
    with pytest.raises(UsageError, match="different sample counts \\(image: 6, features: 7\\)"):
        load_calibration(str(p), [IMG, FEAT])


@pytest.mark.parametrize("name,content,match", [
    ("missing.npy", None, "no such file or folder"),
    ("data.csv", b"1,2,3", "unknown kind"),
    ("broken.npy", b"not numpy", "cannot read as .npy"),
    ("broken.npz", b"not a zip", "cannot read as .npz"),
])
def test_unreadable_or_unknown_files_are_refused(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(UsageError, match=match):
        load_calibration(str(p), [IMG])


# -- images ---------------------------------------------------------------------------------------
def _png_folder(tmp_path, n=6, mode="RGB"):
    from PIL import Image

    folder = tmp_path / "imgs"
    (folder / "class_b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 10 + i, 7 + 2 * i  # every size differs from the input's 8x6: all get resized
        px = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        sub = folder / "class_b" if i % 2 else folder
        Image.fromarray(px).convert(mode).save(sub / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder_is_resized_and_normalized_with_mean_std(tmp_path):
    folder = _png_folder(tmp_path)
    data = load_calibration(str(folder), [IMG], mean=[127.5], std=[127.5])
    assert data.kind == "images" and len(data) == 6
    for (a,) in data.samples:
        assert a.shape == (1, 8, 6, 3) and a.dtype == np.float32
        assert a.min() >= -1.0 and a.max() <= 1.0
    assert np.ptp(data.samples[0][0]) > 1.0  # real content, not a constant


def test_image_folder_per_channel_mean_std(tmp_path):
    folder = _png_folder(tmp_path)
    a = load_calibration(str(folder), [IMG], mean="0,0,0", std="255,255,255").samples[0][0]
    b = load_calibration(str(folder), [IMG], mean=[0.0], std=[255.0]).samples[0][0]
    np.testing.assert_allclose(a, b)
    with pytest.raises(UsageError, match="--mean has 2 values; input 'image' has 3 channels"):
        load_calibration(str(folder), [IMG], mean=[1.0, 2.0], std=[1.0])


@pytest.mark.parametrize("tname,zp", [("UINT8", 0), ("INT8", -128)])
def test_image_folder_uses_source_input_quantization(tmp_path, tname, zp):
    """A source whose input was quantized with scale 1/255 (uint8 zp 0 == int8 zp -128) reads pixels as [0, 1]."""
    folder = _png_folder(tmp_path)
    spec = InputSpec("image", (1, 8, 6, 3), np.dtype(np.float32), quant=(1 / 255, zp, tname))
    got = load_calibration(str(folder), [spec]).samples[0][0]
    ref = load_calibration(str(folder), [IMG], mean=[0.0], std=[255.0]).samples[0][0]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_image_folder_grayscale_input(tmp_path):
    folder = _png_folder(tmp_path, mode="L")
    spec = InputSpec("image", (1, 8, 6, 1), np.dtype(np.float32))
    data = load_calibration(str(folder), [spec], mean=[0.0], std=[1.0])
    assert data.samples[0][0].shape == (1, 8, 6, 1)


def test_image_folder_float_input_without_normalization_is_refused(tmp_path):
    with pytest.raises(UsageError, match="pixel normalization is unknown: pass --mean M --std S"):
        load_calibration(str(_png_folder(tmp_path)), [IMG])


@pytest.mark.parametrize("spec,match", [
    (InputSpec("image", (1, 8, 6, 3), np.dtype(np.float32)), None),
    (InputSpec("image", (1, None, None, 3), np.dtype(np.float32)), "the image size is dynamic"),
    (InputSpec("seq", (1, 5), np.dtype(np.float32)), r"needs an image input \[1, H, W, C\]"),
    (InputSpec("image", (1, 8, 6, 2), np.dtype(np.float32)), "has 2 channels"),
])
def test_image_folder_needs_an_image_shaped_input(tmp_path, spec, match):
    folder = _png_folder(tmp_path)
    if match is None:
        with pytest.raises(UsageError, match="an image folder feeds one input, the model has 2"):
            load_calibration(str(folder), [spec, FEAT], mean=[0.0], std=[1.0])
    else:
        with pytest.raises(UsageError, match=match):
            load_calibration(str(folder), [spec], mean=[0.0], std=[1.0])


def test_image_folder_corrupt_or_empty(tmp_path):
    folder = _png_folder(tmp_path)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(UsageError, match="cannot decode image .*zz_broken.png"):
        load_calibration(str(folder), [IMG], mean=[0.0], std=[1.0])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no images found"):
        load_calibration(str(empty), [IMG], mean=[0.0], std=[1.0])


# -- random and arguments -------------------------------------------------------------------------
def test_random_is_explicit_and_warns():
    data = load_calibration("random", [IMG, FEAT], samples=6)
    assert data.kind == "random" and len(data) == 6 and data.warnings == [RANDOM_WARNING]
    assert data.samples[0][1].shape == (1, 5)


def test_random_uses_source_input_range_and_refuses_integer_inputs():
    spec = InputSpec("image", (1, 8, 6, 3), np.dtype(np.float32), quant=(1 / 255, -128, "INT8"))
    a = np.stack([s[0] for s in load_calibration("random", [spec]).samples])
    assert a.min() >= 0.0 and a.max() <= 1.0
    with pytest.raises(UsageError, match="input 'ids' is int32; random data is only made for float inputs"):
        load_calibration("random", [IDS])


def test_argument_errors():
    with pytest.raises(UsageError, match="--mean and --std go together"):
        load_calibration("random", [IMG], mean=[1.0])
    with pytest.raises(UsageError, match="--std must not be 0"):
        load_calibration("random", [IMG], mean=[1.0], std=[0.0])
    with pytest.raises(UsageError, match="--samples 2: at least"):
        load_calibration("random", [IMG], samples=2)
    with pytest.raises(UsageError, match="--mean 'a,b'"):
        parse_floats("a,b", "--mean")
    assert parse_floats("1, 2,3", "--mean") == [1.0, 2.0, 3.0]


# -- --mean/--std: every data kind where they mean something, an error where they don't -----------
def test_mean_std_apply_to_float_npy_and_npz(tmp_path):
    """Float arrays given with --mean/--std are raw values (float pixels 0..255): normalized like images."""
    raw = np.random.default_rng(1).uniform(0, 255, size=(5, 8, 6, 3)).astype(np.float32)
    got = load_calibration(_save(tmp_path, "x.npy", raw), [IMG], mean="10,20,30", std="2,4,8").samples[2][0]
    np.testing.assert_allclose(got[0], (raw[2] - [10, 20, 30]) / [2, 4, 8], rtol=1e-6)
    p = tmp_path / "x.npz"
    np.savez(p, image=raw, features=np.full((5, 1, 5), 255.0, np.float32), ids=np.ones((5, 1, 4), np.int64))
    img, feat, ids = load_calibration(str(p), [IMG, FEAT, IDS], mean=[127.5], std=[127.5]).samples[0]
    np.testing.assert_allclose(img[0], (raw[0] - 127.5) / 127.5, rtol=1e-6)
    np.testing.assert_allclose(feat, 1.0)  # every float input is normalized
    assert ids.dtype == np.int32 and (ids == 1).all()  # integer inputs are fed as stored
    # without the flags float data is taken as it is
    np.testing.assert_array_equal(load_calibration(_save(tmp_path, "y.npy", raw), [IMG]).samples[2][0][0], raw[2])


def test_mean_std_apply_to_random_pixels():
    a = np.stack([s[0] for s in load_calibration("random", [IMG], mean=[127.5], std=[127.5]).samples])
    pixels = a * 127.5 + 127.5  # back to pixels: integers 0..255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-4)
    assert pixels.min() >= 0 and pixels.max() <= 255 and np.ptp(pixels) > 200
    b = np.stack([s[0] for s in load_calibration("random", [IMG], mean="0,0,0", std="255,255,1").samples])
    assert b[..., :2].max() <= 1.0 and b[..., 2].max() > 100  # per channel
    with pytest.raises(UsageError, match="--mean has 2 values; input 'image' has 3 channels"):
        load_calibration("random", [IMG], mean=[1.0, 2.0], std=[1.0])


@pytest.mark.parametrize("kind", ["random", "npy", "images"])
def test_mean_std_without_a_float_input_is_refused(tmp_path, kind):
    """Integer inputs are fed as stored (a uint8 image input takes the pixels): --mean/--std mean nothing there."""
    u8 = InputSpec("image", (1, 8, 6, 3), np.dtype(np.uint8))
    calib = {"random": "random", "npy": _save(tmp_path, "x.npy", np.ones((5, 8, 6, 3), np.uint8)),
             "images": str(_png_folder(tmp_path))}[kind]
    with pytest.raises(UsageError, match=r"--mean/--std normalize float inputs; this model has none \('image' uint8\)"):
        load_calibration(calib, [u8], mean=[0.0], std=[1.0])
    if kind != "random":  # without the flags the pixels go in as they are
        assert load_calibration(calib, [u8]).samples[0][0].dtype == np.uint8


def test_mean_std_with_several_signatures_need_a_float_input_in_one():
    """Per signature: a float-input signature is normalized, an integer-only one fed as stored; none: refused."""
    from types import SimpleNamespace

    from tflite_inverter.quantization.source import _load_signature_calibration

    img = SimpleNamespace(key="classify", inputs=[IMG])
    ids = SimpleNamespace(key="lookup", inputs=[IDS])
    src = SimpleNamespace(sigs=[img, ids], keys=["classify", "lookup"], inputs=[IMG])
    with pytest.raises(UsageError, match="signature 'lookup': --calib random: input 'ids' is int32"):
        _load_signature_calibration("random", src, [127.5], [127.5], None, 0)  # the usual random refusal, not ours
    src.sigs = [ids, SimpleNamespace(key="lookup2", inputs=[IDS])]
    with pytest.raises(UsageError, match=r"--mean/--std normalize float inputs; this model has none"):
        _load_signature_calibration("random", src, [127.5], [127.5], None, 0)
