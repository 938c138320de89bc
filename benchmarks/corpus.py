"""Convert every file of ../shared/models and print one row per file.

    python benchmarks/corpus.py [--save] [--json OUT.json] [FILES...]

Each file: read it; run it in the TFLite interpreter (child process) on seeded inputs; rebuild it and
run the rebuilt model on the same inputs (in-process, or through a saved SavedModel with --save, as
``convert`` does); compare output by output. Status is one of: ``match``, ``MISMATCH``,
``unsupported`` (ops we do not rebuild, named), ``refused`` (ops nobody can rebuild, named with the
reason), ``rebuilt, no reference`` (the stock interpreter cannot run the original: only the rebuild
is attempted), ``invalid``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_inverter.errors import InterpreterError, InverterError  # noqa: E402
from tflite_inverter.ops import registry  # noqa: E402
from tflite_inverter.reader import read_model  # noqa: E402
from tflite_inverter.verify import (  # noqa: E402
    _lsb_scale,
    compare_output,
    float_tolerance,
    is_quantized_model,
    reference_outputs,
)

CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))


@dataclass
class Row:
    file: str
    status: str
    detail: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "detail": self.detail, "outputs": self.outputs,
                "seconds": round(self.seconds, 2)}


def _summary(checks: list[Any]) -> str:
    parts = []
    for c in checks:
        if c.max_lsb is not None:
            parts.append(f"{c.name}: {c.max_lsb:.0f} LSB max, {100 * c.within_1_lsb:.1f}% <=1")
        elif c.exact_fraction is not None:
            parts.append(f"{c.name}: {100 * c.exact_fraction:.1f}% equal")
        else:
            rel = c.max_abs_err / max(c.ref_max_abs, 1e-12)
            parts.append(f"{c.name}: abs {c.max_abs_err:.2g} ({rel:.1g} of max)")
    return "; ".join(parts)


def convert_one(path: Path, save: bool = False, seed: int = 0) -> Row:
    """Rebuild one file and compare it with the interpreter; never raises."""
    start = time.time()
    name = path.name
    try:
        model = read_model(path)
    except InverterError as exc:
        return Row(name, "invalid", str(exc).splitlines()[0])
    problems = []
    refused = []
    for sg in model.subgraphs:
        for op in sg.operators:
            ok, why = registry.support(op, sg)
            if not ok:
                (refused if op.key in registry.REFUSED else problems).append((op.key, why))
    if refused:
        keys = sorted({k for k, _ in refused})
        return Row(name, "refused", "; ".join(f"{k}: {registry.REFUSED[k]}" for k in keys), seconds=time.time() - start)
    if problems:
        counts = Counter(k for k, _ in problems)
        why = dict(problems)
        detail = " // ".join(f"{k}{f' x{n}' if n > 1 else ''}: {why[k][:140]}" for k, n in sorted(counts.items()))
        return Row(name, "unsupported", detail, seconds=time.time() - start)
    from tflite_inverter._tf import tf
    from tflite_inverter.conversion import io_plans
    from tflite_inverter.rebuild import RebuildOptions, make_module

    try:
        module = make_module(model, RebuildOptions())
        plans = io_plans(model, module)
    except InverterError as exc:
        return Row(name, "rebuild-error", str(exc).splitlines()[-1][:200], seconds=time.time() - start)
    except Exception as exc:  # a bug of ours: report it in the table rather than stop the run
        return Row(name, "CRASH", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                   seconds=time.time() - start)
    try:
        feeds, refs, notes = reference_outputs(str(path), plans, None)
    except InterpreterError as exc:
        return Row(name, "rebuilt, no reference", f"rebuilt; {str(exc)[:200]}", seconds=time.time() - start)
    try:
        if save:
            with tempfile.TemporaryDirectory() as tmp:
                tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
                fns = {k: v for k, v in tf.saved_model.load(tmp).signatures.items()}
                outs = [fns[p.key](**{n: tf.constant(a) for n, a in zip(p.saved_inputs, f)})
                        for p, f in zip(plans, feeds)]
        else:
            outs = [module.concrete[p.key](**{n: tf.constant(a) for n, a in zip(p.saved_inputs, f)})
                    for p, f in zip(plans, feeds)]
    except Exception as exc:  # noqa: BLE001 - a bug of ours: put it in the table
        return Row(name, "CRASH", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                   seconds=time.time() - start)
    quantized = is_quantized_model(model)
    tolerance, why = float_tolerance(model)
    if why:
        notes.append(why.split(":")[0])
    checks = []
    for p, ref, out in zip(plans, refs, outs):
        sg = model.subgraphs[0] if p.signature is None else model.subgraphs[
            next(s.subgraph_index for s in model.signatures if s.key == p.signature)]
        for k, (oname, t) in enumerate(zip(p.saved_outputs, p.output_tensors)):
            checks.append(compare_output(p.key, oname, ref[k], out[oname].numpy(), t, _lsb_scale(model, sg, t),
                                         quantized, tolerance))
    ok = all(c.passed for c in checks)
    detail = _summary(checks) + "".join(f" [{n}]" for n in notes)
    return Row(name, "match" if ok else "MISMATCH", detail, [c.to_json() for c in checks], time.time() - start)


def supervised_rows(files: list[Path], onednn: str | None = None, save: bool = False,
                    each: Callable[[Row], None] | None = None) -> list[Row]:
    """``convert_one`` of every file in a TensorFlow child process (``onednn``: its
    TF_ENABLE_ONEDNN_OPTS, None to inherit); a file that kills the child (a TensorFlow crash) or
    exceeds a cap becomes its own CRASH row, and the next file gets a new child."""
    from tflite_inverter.isolation import Worker

    rows = []
    env = {} if onednn is None else {"TF_ENABLE_ONEDNN_OPTS": onednn}
    with Worker(env=env) as worker:
        for f in files:
            start = time.time()
            try:
                row = worker.call(convert_one, {"path": f, "save": save}, model=f.name, what="converting")
            except InverterError as exc:
                row = Row(f.name, "CRASH", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          seconds=time.time() - start)
            if each is not None:
                each(row)
            rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    lines = ["| file | status | detail | s |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.file.removesuffix('.tflite')} | {r.status} | {r.detail.replace('|', '/')} | {r.seconds:.1f} |")
    counts = Counter(r.status for r in rows)
    lines.append("")
    lines.append("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="default: every .tflite of the corpus folder")
    ap.add_argument("--save", action="store_true", help="go through a saved SavedModel, as convert does")
    ap.add_argument("--json", help="also write the rows as JSON")
    ap.add_argument("--onednn", choices=("0", "1"), default=None,
                    help="TF_ENABLE_ONEDNN_OPTS of the TensorFlow child (default: inherited; the CPU decides)")
    args = ap.parse_args(argv)
    files = [Path(f) for f in args.files] or sorted(CORPUS.glob("*.tflite"))
    if not files:
        print(f"no .tflite files (corpus folder {CORPUS} absent?)")
        return 0
    def each(row: Row) -> None:
        print(f"{row.status:18s} {row.seconds:6.1f}s  {row.file}  {row.detail[:150]}", file=sys.stderr, flush=True)

    rows = supervised_rows(files, args.onednn, args.save, each)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.to_json() for r in rows], fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
