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

``--corpus [DIR]``: instead, an accuracy table over the float models of the shared corpus
(``../shared/models`` by default; skipped when absent): every .tflite without quantized
activations, with float inputs only and at most ``--max-mb`` MB, is quantized to int8 with RANDOM
calibration data (the only data there is for them), one child process per model with a time cap,
and the table gives ops, SQNR (min over outputs), cosine (min), top-1 agreement (classifier-shaped
outputs), the layer that loses the most precision, sizes and seconds, or the refusal.

    .venv/bin/python benchmarks/bench_quantize.py --corpus [DIR] [--max-mb 5] [--timeout 180]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflite_inverter.conversion.pipeline import convert  # noqa: E402
from tflite_inverter.model.reader import read_model  # noqa: E402
from tflite_inverter.quantization.converter import converter_for
from tflite_inverter.quantization.pipeline import quantize  # noqa: E402


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


CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models")
#: random calibration: this many samples, the last 20 % held back for the accuracy report
CORPUS_SAMPLES = 20


def _corpus_candidate(path: str, max_bytes: int) -> str | None:
    """None for a float model to quantize, else why it is skipped."""
    from tflite_inverter.conversion.plan import is_quantized_model

    size = os.path.getsize(path)
    if size > max_bytes:
        return f"skipped: {size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB"
    try:
        m = read_model(path)
    except Exception as exc:  # noqa: BLE001 - a corpus file we cannot even read: say so
        return f"skipped: unreadable ({exc})"[:120]
    if is_quantized_model(m):
        return "skip: quantized activations"
    sg = m.subgraphs[m.signatures[0].subgraph_index] if m.signatures else m.main
    kinds = {sg.tensors[i].type_name for i in sg.inputs}
    if kinds - {"FLOAT32"}:
        return f"skip: non-float input ({', '.join(sorted(kinds - {'FLOAT32'}))})"
    return None


def _corpus_one(path: str) -> dict:
    """Quantize one corpus model (in the child process); a JSON-able row."""
    m = read_model(path)
    row: dict = {"ops": sum(len(sg.operators) for sg in m.subgraphs)}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as d:
        try:
            r = quantize(path, os.path.join(d, "q.tflite"), calib="random", dtype="int8", samples=CORPUS_SAMPLES)
        except Exception as exc:  # noqa: BLE001 - the refusal is the result
            row.update(error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:160],
                       seconds=time.perf_counter() - t0)
            return row
    acc = [a for a in r.accuracy if "sqnr_db" in a]
    tops = [a["top1_agreement"] for a in acc if "top1_agreement" in a]
    worst = r.worst_layers[0] if isinstance(r.worst_layers, list) and r.worst_layers else None
    row.update(sqnr=min(a["sqnr_db"] for a in acc) if acc else None,
               cosine=min(a["cosine"] for a in acc) if acc else None, top1=min(tops) if tops else None,
               worst=f"{worst['op']} {worst['sqnr_db']:.1f}dB" if worst else "-",
               before=r.size_before, after=r.size_after, seconds=time.perf_counter() - t0,
               fully_integer=r.fully_integer)
    return row


def _corpus(folder: str, max_mb: float, timeout: float) -> int:
    if not os.path.isdir(folder):
        print(f"{folder}: no such folder; corpus table skipped")
        return 0
    rows = []
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".tflite")):
        path = os.path.join(folder, name)
        why = _corpus_candidate(path, int(max_mb * 1e6))
        if why is not None:
            if not why.startswith("skip:"):  # size/unreadable: listed; quantized/integer inputs: not float models
                rows.append((name, {"error": why}))
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--corpus-one", path]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            lines = proc.stdout.strip().splitlines()
            if proc.returncode == 0 and lines:
                row = json.loads(lines[-1])
            else:
                err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                how = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0
                       else f"child exit {proc.returncode}: {err[-1] if err else ''}")
                row = {"error": how[:160]}
        except subprocess.TimeoutExpired:
            row = {"error": f"timeout after {timeout:.0f} s"}
        row.setdefault("seconds", time.perf_counter() - t0)
        rows.append((name, row))
        print(f"  {name}: {row.get('error') or 'ok'}", file=sys.stderr, flush=True)
    head = ["file", "ops", "SQNR min", "cosine min", "top-1", "worst layer", "size before -> after", "s", "result"]
    table = []
    for name, r in rows:
        if "error" in r:
            table.append([name, str(r.get("ops", "-")), "", "", "", "", "", f"{r.get('seconds', 0):.0f}",
                          r["error"]])
            continue
        top = "-" if r.get("top1") is None else f"{100 * r['top1']:.0f}%"
        sq = "-" if r.get("sqnr") is None else f"{r['sqnr']:.1f} dB"
        cos = "-" if r.get("cosine") is None else f"{r['cosine']:.4f}"
        table.append([name, str(r["ops"]), sq, cos, top, r["worst"], f"{r['before']} -> {r['after']}",
                      f"{r['seconds']:.0f}", "ok" if r.get("fully_integer") else "ok (float ops left)"])
    print(f"int8 per-channel with RANDOM calibration data ({CORPUS_SAMPLES} uniform samples, "
          f"{CORPUS_SAMPLES // 5} held back): the corpus has no real inputs for these models, so the numbers "
          "measure the recipe on noise, not accuracy on real data")
    widths = [max(len(x) for x in col) for col in zip(head, *table)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--model", default=None, help="a float .tflite (default: a generated 32x32x3 conv net)")
    ap.add_argument("--corpus", nargs="?", const=CORPUS_DIR, default=None, metavar="DIR",
                    help="the accuracy table of the corpus float models instead (default DIR: ../shared/models)")
    ap.add_argument("--max-mb", type=float, default=5.0, help="--corpus: skip larger models")
    ap.add_argument("--timeout", type=float, default=180.0, help="--corpus: seconds per model")
    ap.add_argument("--corpus-one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.corpus_one:
        print(json.dumps(_corpus_one(args.corpus_one), default=float))
        return 0
    if args.corpus:
        return _corpus(os.path.abspath(args.corpus), args.max_mb, args.timeout)
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
