"""Benchmark the reader: parse time and memory on the real corpus and on big synthetic models.

Run with ``.venv/bin/python benchmarks/bench_reader.py`` (or ``make bench``). It reports:

* for every file of ``../shared/models`` (skipped when absent): ``read_model`` time (best of 3),
  tracemalloc peak, and the RSS delta of the parse (VmRSS and its anonymous part, RssAnon);
* for two synthetic models it writes into a temp dir with the ``flatbuffers`` Builder (51 MB and
  210 MB of float32 weights in FULLY_CONNECTED ops): the same numbers measured in a fresh process,
  plus the wall time of ``python -c "from tflite_inverter import read_model; read_model(path)"``
  (the cost a CLI pays before doing anything) and whether ``tensorflow`` got imported.

Targets (exit status 1 when missed): the ~210 MB model parses in < 0.5 s (first call in a fresh
process) with < 50 MB of extra memory (max of tracemalloc peak and RssAnon delta; the weights stay in
the file mapping), and reading never imports TensorFlow. Timings are wall-clock and noisy on a busy
machine; "MB" is 10^6 bytes throughout.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))
MB = 1_000_000  # decimal megabytes in every printed number
TARGET_SECONDS = 0.5
TARGET_EXTRA_BYTES = 50 * MB


def rss() -> dict[str, int]:
    """VmRSS and RssAnon of this process, in bytes (Linux /proc; zeros elsewhere)."""
    out = {"VmRSS": 0, "RssAnon": 0}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def measure(path: str, repeats: int = 3) -> dict[str, float]:
    """Parse ``path`` in this process: best time, RSS delta with the model alive, tracemalloc peak."""
    from tflite_inverter import read_model

    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    model = read_model(path)
    first = time.perf_counter() - t0
    after = rss()
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        read_model(path)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    read_model(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    weights = sum(t.nbytes for sg in model.subgraphs for t in sg.tensors if t.is_constant)
    del model
    return {"first_s": first, "best_s": min(times), "median_s": statistics.median(times),
            "rss_delta": after["VmRSS"] - before["VmRSS"], "anon_delta": after["RssAnon"] - before["RssAnon"],
            "traced_peak": peak, "weights": weights}


# A fresh interpreter measures one file the way a CLI run would see it; prints one JSON line.
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[2])
from bench_reader import measure
from tflite_inverter import read_model  # noqa: F401 - the import a CLI pays for
t_import = time.perf_counter() - t0
res = measure(sys.argv[1])
res["import_s"] = t_import
res["tensorflow_loaded"] = "tensorflow" in sys.modules
print(json.dumps(res))
"""


def measure_in_child(path: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(Path(__file__).parent)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_startup(path: Path, runs: int = 3) -> tuple[float, bool]:
    """Best wall time of a fresh ``python -c 'read_model(path)'`` and whether it imported TensorFlow."""
    code = ("import sys; from tflite_inverter import read_model; read_model(sys.argv[1]); "
            "print('tensorflow' in sys.modules)")
    best, loaded = float("inf"), False
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - t0)
        loaded = loaded or out.stdout.strip() == "True"
    return best, loaded


# -- synthetic models -------------------------------------------------------------------------------


def _aligned_bytes_vector(b, data: np.ndarray, alignment: int = 16) -> int:
    """Like ``Builder.CreateNumpyVector`` for a [ubyte] vector, but 16-byte aligned (schema: force_align)."""
    raw = data.reshape(-1).view(np.uint8)
    b.StartVector(1, raw.size, alignment)
    b.head = b.head - raw.size
    b.Bytes[b.head:b.head + raw.size] = raw.tobytes()
    b.vectorNumElems = raw.size
    return b.EndVector()


def _table_vector(b, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def synthetic_model(path: Path, layers: int, width: int, seed: int = 0) -> int:
    """A chain of ``layers`` FULLY_CONNECTED ops with float32 weights alternating [2w, w] and [w, 2w].

    Written with the ``flatbuffers`` Builder and the ``tflite`` package's table functions: a few
    seconds for hundreds of MB, no TensorFlow. Returns the number of weight bytes.
    """
    import flatbuffers

    mods = {n: importlib.import_module(f"tflite.{n}") for n in ("Tensor", "SubGraph", "Operator", "OperatorCode",
                                                               "Model", "Buffer")}
    T, SG, OP, OC, M, BUF = (mods[n] for n in ("Tensor", "SubGraph", "Operator", "OperatorCode", "Model", "Buffer"))
    rng = np.random.default_rng(seed)
    shapes = [(2 * width, width) if k % 2 == 0 else (width, 2 * width) for k in range(layers)]
    weight_bytes = sum(4 * a * c for a, c in shapes)
    b = flatbuffers.Builder(weight_bytes + 64 * 1024)
    bufs = []
    BUF.BufferStart(b)
    bufs.append(BUF.BufferEnd(b))  # buffer 0: the "no data" sentinel
    for shape in shapes:
        vec = _aligned_bytes_vector(b, rng.standard_normal(shape, dtype=np.float32))
        BUF.BufferStart(b)
        BUF.BufferAddData(b, vec)
        bufs.append(BUF.BufferEnd(b))

    def tensor(name: str, shape: tuple[int, ...], buffer: int) -> int:
        n = b.CreateString(name)
        s = b.CreateNumpyVector(np.asarray(shape, np.int32))
        T.TensorStart(b)
        T.TensorAddShape(b, s)
        T.TensorAddType(b, 0)  # FLOAT32
        T.TensorAddBuffer(b, buffer)
        T.TensorAddName(b, n)
        return T.TensorEnd(b)

    tensors, ops = [tensor("input", (1, width), 0)], []
    act = 0
    for k, shape in enumerate(shapes):
        tensors.append(tensor(f"dense_{k}/kernel", shape, k + 1))
        tensors.append(tensor(f"dense_{k}/out", (1, shape[0]), 0))
        w, out = len(tensors) - 2, len(tensors) - 1
        ins, outs = b.CreateNumpyVector(np.array([act, w, -1], np.int32)), b.CreateNumpyVector(np.array([out],
                                                                                                      np.int32))
        OP.OperatorStart(b)
        OP.OperatorAddOpcodeIndex(b, 0)
        OP.OperatorAddInputs(b, ins)
        OP.OperatorAddOutputs(b, outs)
        ops.append(OP.OperatorEnd(b))
        act = out
    OC.OperatorCodeStart(b)
    OC.OperatorCodeAddDeprecatedBuiltinCode(b, 9)
    OC.OperatorCodeAddBuiltinCode(b, 9)  # FULLY_CONNECTED
    OC.OperatorCodeAddVersion(b, 1)
    code = OC.OperatorCodeEnd(b)
    tvec, ovec = _table_vector(b, tensors), _table_vector(b, ops)
    sin, sout = b.CreateNumpyVector(np.array([0], np.int32)), b.CreateNumpyVector(np.array([act], np.int32))
    SG.SubGraphStart(b)
    SG.SubGraphAddTensors(b, tvec)
    SG.SubGraphAddOperators(b, ovec)
    SG.SubGraphAddInputs(b, sin)
    SG.SubGraphAddOutputs(b, sout)
    sg = SG.SubGraphEnd(b)
    codes, sgs, bvec = _table_vector(b, [code]), _table_vector(b, [sg]), _table_vector(b, bufs)
    desc = b.CreateString("synthetic benchmark model")
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes)
    M.ModelAddSubgraphs(b, sgs)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, bvec)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    with open(path, "wb") as fh:
        fh.write(b.Output())
    return weight_bytes


# -- report -----------------------------------------------------------------------------------------


def _row(name: str, size: int, r: dict[str, float]) -> str:
    return (f"{name[:58]:58} {size / MB:8.2f} {r['best_s'] * 1000:9.1f} {r['first_s'] * 1000:9.1f} "
            f"{r['traced_peak'] / MB:8.2f} {r['rss_delta'] / MB:8.1f} {r['anon_delta'] / MB:8.1f}")


HEADER = (f"{'file':58} {'MB':>8} {'best ms':>9} {'first ms':>9} {'trace MB':>8} {'dRSS MB':>8} {'dAnon MB':>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of .tflite files")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the 51 MB / 210 MB synthetic models")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    ok = True

    files = sorted(args.corpus.glob("*.tflite")) if args.corpus.is_dir() else []
    if files:
        print(f"corpus: {len(files)} files in {args.corpus}")
        print(HEADER)
        total_t, total_b = 0.0, 0
        for p in files:
            r = measure(str(p))
            total_t += r["best_s"]
            total_b += p.stat().st_size
            print(_row(p.name, p.stat().st_size, r))
        print(f"corpus total: {total_b / MB:.1f} MB parsed in {total_t:.2f} s "
              f"({total_b / MB / total_t:.0f} MB/s, best-of-3 per file)")
    else:
        print(f"corpus: {args.corpus} is absent, skipped")

    if "tensorflow" in sys.modules:
        print("FAIL: reading the corpus imported tensorflow")
        ok = False

    if not args.no_synthetic:
        print()
        with tempfile.TemporaryDirectory(prefix="bench_reader_") as tmp:
            specs = [("synthetic_51mb.tflite", 2, 1792), ("synthetic_210mb.tflite", 4, 2560)]
            built = []
            for name, layers, width in specs:
                path = Path(tmp) / name
                t0 = time.perf_counter()
                weights = synthetic_model(path, layers, width)
                built.append((path, weights))
                print(f"built {name}: {path.stat().st_size / MB:.1f} MB, {weights / MB:.1f} MB of float32 "
                      f"weights, in {time.perf_counter() - t0:.1f} s")
            print("fresh process per file:")
            print(HEADER + f" {'import ms':>9} {'startup ms':>10} {'TF?':>4}")
            for path, weights in built:
                r = measure_in_child(path)
                start_s, tf_loaded = cli_startup(path)
                tf_loaded = tf_loaded or bool(r["tensorflow_loaded"])
                print(_row(path.name, path.stat().st_size, r)
                      + f" {r['import_s'] * 1000:9.1f} {start_s * 1000:10.1f} {'yes' if tf_loaded else 'no':>4}")
                assert r["weights"] == weights, (r["weights"], weights)
                if tf_loaded:
                    print(f"FAIL: read_model({path.name}) imported tensorflow")
                    ok = False
                if weights >= 200 * MB:
                    extra = max(r["anon_delta"], r["traced_peak"])
                    verdict = r["first_s"] < TARGET_SECONDS and extra < TARGET_EXTRA_BYTES
                    print(f"{'PASS' if verdict else 'FAIL'}: {weights / MB:.0f} MB of weights parsed in "
                          f"{r['first_s'] * 1000:.0f} ms on the first call (best {r['best_s'] * 1000:.1f} ms; target "
                          f"< {TARGET_SECONDS * 1000:.0f} ms) with {extra / MB:.1f} MB extra memory "
                          f"(target < {TARGET_EXTRA_BYTES / MB:.0f} MB)")
                    ok = ok and verdict
    print("tensorflow imported by reading: " + ("yes" if "tensorflow" in sys.modules else "no"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
