"""Benchmark: ``quantize`` (our path) vs calling TFLiteConverter directly on the same SavedModel.

Both sides get the same float SavedModel (written by ``convert --float-io --no-fake-quant`` from a
small conv net) and the same calibration samples (.npy), and produce the same int8 recipe. Timed:

* ours: ``quantize(saved_model, out, calib=X.npy, evaluate=False)`` end to end (load the .npy, check
  it against the model's inputs, calibrate and convert, write atomically);
* direct: ``np.load`` + ``TFLiteConverter.from_saved_model`` + representative dataset + ``convert``
  + write.

Runs alternate (ours, direct, ours, ...) and the median of each is reported; target ratio <= 1.1.
Also printed, for information: the rebuild overhead of a .tflite source and the accuracy report.

    .venv/bin/python benchmarks/bench_quantize.py [--repeats 5] [--samples 200] [--model X.tflite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflite_inverter.conversion import convert  # noqa: E402
from tflite_inverter.quantize import converter_for, quantize  # noqa: E402
from tflite_inverter.reader import read_model  # noqa: E402


def _build_model(path: str) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    k1 = tf.constant(rng.normal(0, 0.2, (3, 3, 3, 16)).astype(np.float32))
    k2 = tf.constant(rng.normal(0, 0.2, (3, 3, 16, 32)).astype(np.float32))
    wf = tf.constant(rng.normal(0, 0.05, (8 * 8 * 32, 10)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")], autograph=False)
    def fn(x):
        y = tf.nn.relu(tf.nn.conv2d(x, k1, 2, "SAME"))
        y = tf.nn.relu(tf.nn.conv2d(y, k2, 2, "SAME"))
        return tf.nn.softmax(tf.matmul(tf.reshape(y, [1, -1]), wf))

    blob = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    with open(path, "wb") as fh:
        fh.write(blob)


def _direct(saved_dir: str, npy: str, out: str) -> float:
    t0 = time.perf_counter()
    arr = np.load(npy)
    name = "image"

    def rep():
        for i in range(arr.shape[0]):
            yield {name: arr[i:i + 1].astype(np.float32)}

    conv = converter_for(saved_dir, ["serving_default"], "int8", "int8", "int8", False, rep)
    blob = conv.convert()
    with open(out, "wb") as fh:
        fh.write(blob)
    return time.perf_counter() - t0


def _ours(saved_dir: str, npy: str, out: str, evaluate: bool = False) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    r = quantize(saved_dir, out, calib=npy, force=True, evaluate=evaluate)
    return time.perf_counter() - t0, r.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--model", default=None, help="a float .tflite (default: a generated 32x32x3 conv net)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as d:
        model = args.model or os.path.join(d, "net.tflite")
        if not args.model:
            _build_model(model)
        saved = os.path.join(d, "sm")
        convert(model, saved, float_io=True, fake_quant=False, verify=False)
        m = read_model(model)
        t = m.main.tensors[m.main.inputs[0]]
        shape = [d_ if d_ > 0 else 1 for d_ in t.shape_signature]
        rng = np.random.default_rng(0)
        npy = os.path.join(d, "calib.npy")
        np.save(npy, rng.uniform(-1, 1, size=[args.samples, *shape[1:]]).astype(np.float32))
        # eval held back by `quantize` is 20%: the direct side calibrates on the same 80% for fairness
        n_cal = args.samples - max(1, round(args.samples * 0.2))
        npy_cal = os.path.join(d, "calib_direct.npy")
        np.save(npy_cal, np.load(npy)[:n_cal])
        _ours(saved, npy, os.path.join(d, "warm.tflite"))  # warm-up: imports, first trace
        ours, direct, stages = [], [], []
        for _ in range(args.repeats):
            s, st = _ours(saved, npy, os.path.join(d, "ours.tflite"))
            ours.append(s)
            stages.append(st)
            direct.append(_direct(saved, npy_cal, os.path.join(d, "direct.tflite")))
        t0 = time.perf_counter()
        _ours(saved, npy, os.path.join(d, "eval.tflite"), evaluate=True)
        with_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        quantize(model, os.path.join(d, "from_tflite.tflite"), calib=npy, force=True, evaluate=False)
        from_tflite = time.perf_counter() - t0
        size_ours = os.path.getsize(os.path.join(d, "ours.tflite"))
        size_direct = os.path.getsize(os.path.join(d, "direct.tflite"))

    med_o, med_d = statistics.median(ours), statistics.median(direct)
    rows = [
        ("direct TFLiteConverter (load npy + calibrate + convert + write)", med_d),
        ("ours: quantize(SavedModel), no accuracy report", med_o),
        ("  of which calibrate + convert", statistics.median(s["calibrate_convert"] for s in stages)),
        ("  of which load source", statistics.median(s["load"] for s in stages)),
        ("ours: quantize(SavedModel) with the accuracy report", with_eval),
        ("ours: quantize(.tflite): rebuild + save + calibrate + convert", from_tflite),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"int8 per-channel, {args.samples} samples ({n_cal} calibrate), median of {args.repeats}")
    print(f"{'path'.ljust(w)}  seconds")
    for name, s in rows:
        print(f"{name.ljust(w)}  {s:7.3f}")
    ratio = med_o / med_d
    print(f"ratio ours/direct: {ratio:.3f} (target <= 1.1)  {'OK' if ratio <= 1.1 else 'OVER'}")
    print(f"output size: ours {size_ours} bytes, direct {size_direct} bytes")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
