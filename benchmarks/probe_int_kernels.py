"""Measure, kernel by kernel, how exactly the faithful rebuild reproduces TFLite's integer kernels.

    python benchmarks/probe_int_kernels.py             # measure every op x dtype x variant, print the table
    python benchmarks/probe_int_kernels.py --write     # ... and regenerate targets/int_kernel_fidelity.json
    python benchmarks/probe_int_kernels.py --check     # re-measure; exit 1 when the stored table differs
    python benchmarks/probe_int_kernels.py --ops MUL,LOGISTIC --variants base

The ops are those of ``targets/tflite_int8_kernels.json`` that benchmarks/probe_uint8_kernels.py has
a one-op model for (its :data:`SPECS`: one common configuration per op, written in the int8 domain and
rendered as int8, true uint8, or 16x8: int16 activations with zero point 0 and the int8-domain values
x 256 at scale / 256, int8 weights, int64 biases). Each op is measured in each dtype under each :data:`VARIANTS` entry
that applies to it -- the option changes that alter the kernel's arithmetic:

* ``base``: the spec as written;
* ``out_scale_x0.3`` / ``out_scale_x3``: every quantized output's scale times 0.3 / 3, so the input to
  output scale ratio lies on both sides of the spec's (requantizing kernels round differently);
* ``in_zp_extreme``: every quantized activation input's zero point at -120 (int8 domain);
* ``relu`` / ``relu6``: the fused activation, where the op has one;
* ``broadcast``: the second activation input of a binary op has shape [1, 1, 1, C].

Every case is run on :data:`DRAWS` seeded input draws (over each input's range as the spec writes it)
in the interpreter with the DEFAULT kernels (``OpResolverType.AUTO``: XNNPACK where it takes the op)
and the REFERENCE kernels (``BUILTIN_REF``), and through the faithful rebuild (tflite_inverter
``make_module``, default options) in TensorFlow. Per case the table records ``exact`` (every integer
output element equal to the default kernels'), else the max difference in LSB and the fraction within
1 LSB, both against the default kernels and against the reference kernels; or ``kernel refuses``
(the interpreter rejects the case: it is not a kernel) or ``refused`` (the product refuses it by
name, e.g. an UnsupportedOpError) with the reason. The product follows the default kernels (what an
app's interpreter runs); where they differ from the reference ones, both columns show by how much.

Cases run in worker processes that are restarted after a crash (the case that was running is
recorded as ``crash``). The whole run takes a few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.probe_uint8_kernels import INT8_FILE, SPECS, OneOp, _short  # noqa: E402

OUT_FILE = ROOT / "tflite_inverter" / "coverage" / "targets" / "int_kernel_fidelity.json"
MD_FILE = ROOT / "docs" / "int_kernel_fidelity.md"
DTYPES = ("INT8", "UINT8", "INT16")
DRAWS = 8
VARIANTS = ("base", "out_scale_x0.3", "out_scale_x3", "in_zp_extreme", "relu", "relu6", "broadcast")
#: Ops whose second activation input may be broadcast (the ``broadcast`` variant).
BINARY = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD",
          "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL"}
#: Output scales the int16 kernels require (their int8 specs fix 1/256 or 1/128).
FIXED_INT16_OUTPUT = {"LOGISTIC": 1 / 32768, "TANH": 1 / 32768, "SOFTMAX": 1 / 32768}
#: Reference-kernel results not recorded, measured: their output changes from run to run.
REFERENCE_UNRELIABLE = {"SUM/INT16": "not compared: BUILTIN_REF's int16 SUM gives different results on the same "
                                     "inputs from run to run (uninitialised memory)"}
#: Ops the fidelity table leaves out, with the reason.
LEFT_OUT = {
    "SVDF": "stateful, several invocations: tests/test_ops_recurrent.py measures it",
    "LSTM": "stateful integer scheme: tests/test_ops_recurrent.py measures it",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "stateful integer scheme: tests/test_ops_recurrent.py measures it",
}


class VariantOp(OneOp):
    """A :class:`OneOp` that applies one of :data:`VARIANTS` while the spec writes the model."""

    def __init__(self, dtype: str, seed: int, variant: str, op_name: str) -> None:
        super().__init__("INT8" if dtype == "INT16" else dtype, seed)
        self.dtype = dtype  # INT16: rendered by _q8 below
        self._weight = False
        self.variant = variant
        self.op_name = op_name
        self.ranges: list[tuple[int, int] | None] = []  # per model input: its int8-domain range
        self._acts = 0
        self.applied = variant == "base"

    # 16x8: activations int16 (zero point 0, the int8-domain value x 256 at scale / 256), weights int8,
    # biases int64 -------------------------------------------------------------------------------------
    def _q8(self, q8: np.ndarray, scale: float, zp: int, shape: list[int], name: str,
            extra: dict[str, Any] | None = None, const: bool = True) -> tuple:
        if self.dtype != "INT16":
            return super()._q8(q8, scale, zp, shape, name, extra, const)
        if self._weight:
            data = None if q8 is None else np.asarray(q8, np.int8)
            return (name, shape, "INT8", data, {"scale": [scale], "zero_point": [0]}, extra)
        data = None if q8 is None else ((q8.astype(np.int32) - zp) * 256).clip(-32768, 32767).astype(np.int16)
        return (name, shape, "INT16", data, {"scale": [scale / 256], "zero_point": [0]}, extra)

    def weight(self, shape: list[int], scale: float = 0.01, lo: int = -127, hi: int = 127) -> int:
        self._weight = True
        try:
            return super().weight(shape, scale, lo, hi)
        finally:
            self._weight = False

    def bias(self, n: int, scale: float) -> int:
        if self.dtype != "INT16":
            return super().bias(n, scale)
        vals = self.rng.integers(-200 * 256, 200 * 256 + 1, size=[n]).astype(np.int64)
        return self._add(f"t{len(self.tensors)}", [n], "INT64", vals, {"scale": [scale / 256], "zero_point": [0]})

    def act(self, shape: list[int], scale: float = 0.05, zp: int = 0, *, lo: int = -128, hi: int = 127,
            data: Any = None, variable: bool = False) -> int:
        live = data is None and not variable
        if live:
            self._acts += 1
            if self.variant == "in_zp_extreme" and self.dtype != "INT16":  # int16 zero points are 0
                zp, self.applied = -120, True
            if self.variant == "broadcast" and self._acts == 2 and self.op_name in BINARY and len(shape) == 4:
                shape, self.applied = [1, 1, 1, shape[-1]], True
        n = len(self.inputs)
        idx = super().act(shape, scale, zp, lo=lo, hi=hi, data=data, variable=variable)
        if len(self.inputs) > n:
            self.ranges.append((lo, hi))
        return idx

    def raw_in(self, values: np.ndarray, type_name: str) -> int:
        self.ranges.append(None)
        return super().raw_in(values, type_name)

    def out(self, shape: list[int], scale: float = 0.05, zp: int = 0) -> int:
        if self.dtype == "INT16" and self.op_name in FIXED_INT16_OUTPUT:
            scale, zp = FIXED_INT16_OUTPUT[self.op_name] * 256, 0  # _q8 divides by 256
        if self.variant in ("out_scale_x0.3", "out_scale_x3"):
            scale, self.applied = scale * (0.3 if self.variant.endswith("0.3") else 3.0), True
        if self.variant == "broadcast" and self.op_name in BINARY:
            pass  # the output keeps the full shape
        return super().out(shape, scale, zp)

    def op(self, name: str, ins: list[int], outs: list[int], options: dict[str, Any] | None = None,
           table: str | None = None, version: int = 1) -> None:
        if self.variant in ("relu", "relu6") and options and "fused_activation_function" in options:
            options = dict(options, fused_activation_function=self.variant.upper())
            self.applied = True
        super().op(name, ins, outs, options, table, version)


def case_model(op: str, dtype: str, variant: str, seed: int = 0) -> tuple[bytes, VariantOp] | None:
    """The one-op model of ``op`` in ``dtype`` under ``variant``; None when the variant does not apply."""
    b = VariantOp(dtype, seed, variant, op)
    SPECS[op](b)
    if not b.applied:
        return None
    return b.build(), b


def draws(b: VariantOp, n: int = DRAWS) -> list[list[np.ndarray]]:
    """``n`` input sets: the spec's own feeds first, then seeded draws over each input's range."""
    sets = [list(b.feeds)]
    rng = np.random.default_rng(1000 + b.seed)
    shift = 128 if b.dtype == "UINT8" else 0
    for _ in range(n - 1):
        feeds = []
        for a, r, idx in zip(b.feeds, b.ranges, b.inputs):
            if r is None:  # a raw (bool / float) input: keep the spec's values
                feeds.append(a)
                continue
            q8 = rng.integers(r[0], r[1] + 1, size=a.shape)
            if b.dtype == "INT16":  # the int8-domain range, every int16 code in it
                zp = b.quant[idx][1]
                lo16, hi16 = max((r[0] - zp) * 256, -32768), min((r[1] - zp) * 256 + 255, 32767)
                feeds.append(rng.integers(lo16, hi16 + 1, size=a.shape).astype(np.int16))
                continue
            feeds.append((q8 + shift).astype(a.dtype))
        sets.append(feeds)
    return sets


# -- the worker (one process: TensorFlow, the product and the interpreter) --------------------------
def _reason(exc: BaseException) -> str:
    """An interpreter error, without the values TFLite prints of uninitialised params (they change
    from run to run: ``(0 != -520091968)``)."""
    return re.sub(r"\s*\([^()]*!=[^()]*\)", "", _short(str(exc)))


def _interpret(model: bytes, feed_sets: list[list[np.ndarray]], resolver: Any) -> list[list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    outs = []
    for feeds in feed_sets:
        for det, a in zip(it.get_input_details(), feeds):
            it.set_tensor(det["index"], np.asarray(a, det["dtype"]).reshape(det["shape"]))
        it.invoke()
        outs.append([np.array(it.get_tensor(d["index"])) for d in it.get_output_details()])
    return outs


def _rebuild(model: bytes, feed_sets: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    import tensorflow as tf

    from tflite_inverter.model.reader import read_model
    from tflite_inverter.rebuild import RebuildOptions, make_module

    ir_model = read_model(model)
    module = make_module(ir_model, RebuildOptions())
    plan = module.plans[0]
    fn = module.concrete[plan.key]
    sg = ir_model.subgraphs[plan.subgraph_index]
    names = {s.tensor.index: s.name for s in plan.outputs}
    outs = []
    for feeds in feed_sets:
        by_tensor = dict(zip(sg.inputs, feeds))
        got = fn(**{s.name: tf.constant(np.asarray(by_tensor[s.tensor.index], s.dtype.as_numpy_dtype))
                    for s in plan.inputs})
        outs.append([got[names[ti]].numpy() for ti in sg.outputs])
    return outs


def _compare(ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> dict[str, Any]:
    """Max |difference| over every draw and output (in LSB for integer outputs: the difference of the
    codes) and the fraction of elements within 1 LSB."""
    worst, n, within, kinds = 0.0, 0, 0, set()
    for r_set, g_set in zip(ref, got):
        for r, g in zip(r_set, g_set):
            if r.shape != g.shape:
                return {"max_lsb": None, "within_1": 0.0, "error": f"shape {list(g.shape)} != {list(r.shape)}"}
            kinds.add(r.dtype.kind)
            d = np.abs(r.astype(np.float64) - g.astype(np.float64))
            worst = max(worst, float(d.max()) if d.size else 0.0)
            n += d.size
            within += int(np.count_nonzero(d <= 1))
    return {"max_lsb": worst, "within_1": within / n if n else 1.0}


def measure_case(op: str, dtype: str, variant: str) -> dict[str, Any] | None:
    from ai_edge_litert.interpreter import OpResolverType

    from tflite_inverter.errors import InverterError

    built = case_model(op, dtype, variant)
    if built is None:
        return None
    model, b = built
    feed_sets = draws(b)
    try:
        default = _interpret(model, feed_sets, OpResolverType.AUTO)
    except Exception as exc:  # the kernel rejects this case: it is not one the runtime has
        return {"status": "kernel refuses", "reason": _reason(exc)}
    try:
        if f"{op}/{dtype}" in REFERENCE_UNRELIABLE:
            raise RuntimeError(REFERENCE_UNRELIABLE[f"{op}/{dtype}"])
        reference = _interpret(model, feed_sets, OpResolverType.BUILTIN_REF)
        again = _interpret(model, feed_sets, OpResolverType.BUILTIN_REF)
        if any(not np.array_equal(a, b) for ra, rb in zip(reference, again) for a, b in zip(ra, rb)):
            reference, ref_error = None, "nondeterministic (two runs on the same inputs differ)"
    except Exception as exc:
        reference = None
        ref_error = _reason(exc) if f"{op}/{dtype}" in REFERENCE_UNRELIABLE else "fail: " + _reason(exc)
    try:
        ours = _rebuild(model, feed_sets)
    except InverterError as exc:
        return {"status": "refused", "reason": _short(str(exc))}
    except Exception as exc:  # noqa: BLE001 - a bug of ours: recorded, the run goes on
        return {"status": "error", "reason": f"{type(exc).__name__}: {_short(str(exc))}"}
    vs_default = _compare(default, ours)
    row: dict[str, Any] = {"status": "exact" if vs_default["max_lsb"] == 0 else "off",
                           "max_lsb": vs_default["max_lsb"], "within_1": round(vs_default["within_1"], 4)}
    if "error" in vs_default:
        row.update(status="off", reason=vs_default["error"])
    if reference is None:
        row["reference"] = f"reference kernels {ref_error}"
    else:
        vs_ref = _compare(reference, ours)
        kernels = _compare(default, reference)
        row["max_lsb_vs_reference"] = vs_ref["max_lsb"]
        row["default_vs_reference_lsb"] = kernels["max_lsb"]
    return row


def _worker(jobs_path: str) -> int:
    jobs = json.loads(Path(jobs_path).read_text())
    for i, (op, dtype, variant) in jobs:
        print(f"START {i}", flush=True)
        try:
            res = measure_case(op, dtype, variant)
        except Exception as exc:  # noqa: BLE001 - a spec that cannot be built
            res = {"status": "error", "reason": f"{type(exc).__name__}: {_short(str(exc))}"}
        print(f"RESULT {i} {json.dumps(res)}", flush=True)
    return 0


def cases(ops: list[str], variants: tuple[str, ...] = VARIANTS) -> list[tuple[str, str, str]]:
    return [(op, dtype, v) for op in ops for dtype in DTYPES for v in variants]


def measure(jobs: list[tuple[str, str, str]], workers: int = 1, verbose: bool = True) -> dict[str, Any]:
    """``{"OP/DTYPE/variant": row}`` (rows for variants that do not apply are left out)."""
    results: dict[int, Any] = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    pending = list(enumerate(jobs))
    with tempfile.TemporaryDirectory(prefix="probe-int-kernels-") as tmp:
        while pending:
            chunks = [pending[k::workers] for k in range(workers)]
            procs = []
            for k, chunk in enumerate(c for c in chunks if c):
                path = Path(tmp) / f"jobs{k}.json"
                path.write_text(json.dumps([[i, list(j)] for i, j in chunk]))
                procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(path)],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                              cwd=ROOT))
            progress = False
            for proc in procs:
                out, err = proc.communicate()
                started = None
                for line in out.splitlines():
                    if line.startswith("START "):
                        started = int(line.split()[1])
                    elif line.startswith("RESULT "):
                        _, i, payload = line.split(" ", 2)
                        results[int(i)] = json.loads(payload)
                        started, progress = None, True
                if started is not None:
                    tail = " | ".join(ln for ln in err.splitlines()[-2:] if ln.strip())[:200]
                    results[started] = {"status": "crash", "reason": f"exit code {proc.returncode}: {tail}"}
                    progress = True
                    if verbose:
                        print(f"  {jobs[started]}: crashed (exit {proc.returncode})", file=sys.stderr)
                elif proc.returncode != 0 and verbose:
                    print(f"  worker exit {proc.returncode}: {err[-500:]}", file=sys.stderr)
            left = [(i, j) for i, j in pending if i not in results]
            if not progress:
                raise RuntimeError("probe workers made no progress")
            pending = left
    return {"/".join(j): results[i] for i, j in enumerate(jobs) if results[i] is not None}


def probed_ops() -> list[str]:
    listed = json.loads(INT8_FILE.read_text())["ops"]
    return sorted(op for op in listed if op in SPECS and op not in LEFT_OUT)


def summary(rows: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows.values():
        out[r["status"]] = out.get(r["status"], 0) + 1
    return dict(sorted(out.items()))


def summary_per_dtype(rows: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per dtype, the ops counted by their worst variant the interpreter runs: ``exact`` (every such
    variant 0 LSB), ``within 1 LSB`` (worst 1 LSB), ``off`` (worst above 1 LSB), ``refused`` (a variant the
    product refuses by name, the others exact); ops whose every variant the kernel refuses are not counted."""
    worst: dict[tuple[str, str], str] = {}
    rank = {"exact": 0, "within 1 LSB": 1, "refused": 2, "off": 3}
    for key, r in rows.items():
        op, dtype, _ = key.split("/")
        if r["status"] == "kernel refuses":
            continue
        kind = ("exact" if r["status"] == "exact" else "refused" if r["status"] == "refused" else
                "within 1 LSB" if (r.get("max_lsb") or 0) <= 1 else "off")
        worst[(op, dtype)] = max(worst.get((op, dtype), kind), kind, key=rank.__getitem__)
    out: dict[str, dict[str, int]] = {}
    for (_, dtype), kind in sorted(worst.items()):
        counts = out.setdefault(dtype, dict.fromkeys(rank, 0))
        counts[kind] += 1
    return out


def format_table(rows: dict[str, Any]) -> str:
    lines = [f"{'op/dtype/variant':44} {'status':15} {'max LSB':>8} {'<=1 LSB':>8} {'vs ref':>7} {'def-ref':>7}  reason",
             "-" * 120]
    for key, r in rows.items():
        def num(x: Any) -> str:
            return "-" if x is None else f"{x:g}"
        lines.append(f"{key:44} {r['status']:15} {num(r.get('max_lsb')):>8} "
                     f"{num(r.get('within_1')):>8} {num(r.get('max_lsb_vs_reference')):>7} "
                     f"{num(r.get('default_vs_reference_lsb')):>7}  {r.get('reason', r.get('reference', ''))[:60]}")
    return "\n".join(lines)


def litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        return "unknown"


def document(rows: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "tflite-inverter-int-kernel-fidelity",
        "format_version": 1,
        "date": date.today().isoformat(),
        "source": "benchmarks/probe_int_kernels.py",
        "runtime": f"ai-edge-litert {litert_version()}",
        "description": ("Per builtin op x dtype x variant: how exactly the faithful rebuild reproduces the "
                        "interpreter's integer kernel on seeded inputs (max LSB against the default kernels, "
                        "XNNPACK where it takes the op, and against the reference kernels). See the script's "
                        "docstring for the variants."),
        "left_out": LEFT_OUT,
        "summary": summary(rows),
        "ops_per_dtype": summary_per_dtype(rows),
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    """The table per op and dtype: exact variants counted, every other variant named with its status."""
    per: dict[tuple[str, str], list[str]] = {}
    exact: dict[tuple[str, str], int] = {}
    for key, r in doc["rows"].items():
        op, dtype, variant = key.split("/")
        k = (op, dtype)
        per.setdefault(k, [])
        exact.setdefault(k, 0)
        if r["status"] == "exact":
            exact[k] += 1
        elif r["status"] == "off":
            per[k].append(f"{variant} {r['max_lsb']:g} LSB")
        else:
            per[k].append(f"{variant} {r['status']}")
    lines = ["# Integer kernel fidelity of the faithful rebuild", "",
             f"Generated by `python {doc['source']} --write` on {doc['date']} ({doc['runtime']}); do not edit.",
             f"Cases: {', '.join(f'{k} {v}' for k, v in doc['summary'].items())}. "
             "`exact`: every output code equal to the default interpreter's (XNNPACK where it takes the op) "
             "on 8 seeded input draws; `N LSB`: the largest difference; `kernel refuses`: the interpreter "
             "has no kernel for that case; `refused`: the product refuses it by name. "
             "Variants: see the script's docstring. Not in the table: "
             + "; ".join(f"{k} ({v})" for k, v in doc["left_out"].items()) + ".", "",
             "Ops per dtype, each counted by its worst variant the interpreter runs (ops the kernel refuses "
             "in every variant not counted):", "", "| dtype | exact | within 1 LSB | refused by name | off |",
             "|---|---|---|---|---|"]
    for dtype, c in doc["ops_per_dtype"].items():
        lines.append(f"| {dtype} | {c['exact']} | {c['within 1 LSB']} | {c['refused']} | {c['off']} |")
    lines += ["", "| op | dtype | exact variants | others |", "|---|---|---|---|"]
    for (op, dtype), others in sorted(per.items()):
        lines.append(f"| {op} | {dtype} | {exact[(op, dtype)]} | {'; '.join(others) or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"regenerate {OUT_FILE.relative_to(ROOT)}")
    p.add_argument("--check", action="store_true", help="exit 1 when a fresh measurement differs from the file")
    p.add_argument("--ops", help="comma-separated subset of ops")
    p.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    ops = probed_ops() if not args.ops else [o.strip() for o in args.ops.split(",")]
    unknown = [o for o in ops if o not in SPECS]
    if unknown:
        p.error(f"no one-op model for {', '.join(unknown)}")
    variants = VARIANTS if not args.variants else tuple(v.strip() for v in args.variants.split(","))
    rows = measure(cases(ops, variants), workers=args.workers)
    print(format_table(rows))
    print(f"\n{len(rows)} cases: " + ", ".join(f"{k} {v}" for k, v in summary(rows).items()))
    for dtype, c in summary_per_dtype(rows).items():
        print(f"{dtype}: ops " + ", ".join(f"{k} {v}" for k, v in c.items()))
    if args.check:
        stored = json.loads(OUT_FILE.read_text())["rows"]
        diff = {k: (stored.get(k), v) for k, v in rows.items() if stored.get(k) != v}
        for k, (old, new) in diff.items():
            print(f"DIFFERS {k}: stored {old} measured {new}")
        return 1 if diff else 0
    if args.write:
        if args.ops or args.variants:
            p.error("--write regenerates the whole table: drop --ops/--variants")
        doc = document(rows)
        OUT_FILE.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        MD_FILE.parent.mkdir(exist_ok=True)
        MD_FILE.write_text(markdown(doc))
        print(f"wrote {OUT_FILE.relative_to(ROOT)} and {MD_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
