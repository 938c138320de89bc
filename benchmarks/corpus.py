"""Convert every file of ../shared/models and print one row per file.

    python benchmarks/corpus.py [--save] [--json OUT.json] [FILES...]

Each file: read it; run it in the TFLite interpreter (child process) on seeded inputs; rebuild it and
run the rebuilt model on the same inputs (in-process, or through a saved SavedModel with --save, as
``convert`` does); compare output by output. Status is one of: ``match``, ``MISMATCH``,
``unsupported`` (ops we do not rebuild, named), ``refused`` (ops nobody can rebuild, named with the
reason), ``rebuilt, no reference`` (neither the stock interpreter nor TFLite Micro, the second reference
for ops the stock one lacks or misreads, can run the original: only the rebuild is attempted), ``not verified`` (no output to compare: never a match), ``weak`` (every output within
its rule, but on inputs the tool could not make meaningful, e.g. indices the interpreter rejected
and that were lowered to 0: never a match), ``invalid``. Stateful models are compared on 3
consecutive calls per signature, state carried, as ``convert`` does. The rules are
those of :mod:`tflite_inverter.conversion.rules` (the reference spread is measured with the interpreter's
built-in kernels, as ``convert`` does).
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

from tflite_inverter.conversion.plan import invocations  # noqa: E402
from tflite_inverter.conversion.reference import reference_outputs  # noqa: E402
from tflite_inverter.conversion.rules import check_status, compare_plan, pct  # noqa: E402
from tflite_inverter.errors import InterpreterError, InverterError  # noqa: E402
from tflite_inverter.model.reader import read_model  # noqa: E402
from tflite_inverter.ops import registry  # noqa: E402

CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))


@dataclass
class Row:
    file: str
    status: str
    detail: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    reference: str = ""  # the runtime that produced the reference outputs, with its version

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "detail": self.detail, "outputs": self.outputs,
                "seconds": round(self.seconds, 2), "reference": self.reference}


def _summary(checks: list[Any]) -> str:
    """Per output: the rule, the measured value and its threshold."""
    parts = []
    for c in checks:
        nm = c.name + (f" (call {c.call + 1})" if c.call else "")
        if c.rule == "lsb":
            parts.append(f"{nm}: lsb {c.max_lsb:.3g} max (<= 2), {pct(c.within_1_lsb)} <=1 (>= 99%)")
        elif c.rule == "exact":
            parts.append(f"{nm}: exact {pct(c.exact_fraction)} equal")
        elif c.rule == "float":
            rel = c.max_abs_err / max(c.ref_max_abs, 1e-12)
            gov = "spread" if c.threshold["spread_term"] > c.threshold["relative_term"] else "1e-4"
            alt = c.measured.get("max_abs_err_vs_builtin_kernels")
            parts.append(f"{nm}: float abs {c.max_abs_err:.2g} ({rel:.1g} of max) <= {c.threshold['max_abs_err']:.2g}"
                         f" ({gov}" + (f"; {alt:.2g} from the built-in kernels)" if gov == "spread" else ")"))
        else:
            parts.append(f"{nm}: {c.tolerance}")
        if c.weak:
            parts[-1] += " WEAK"
        if c.nonfinite_mismatches:
            parts[-1] += f", {c.nonfinite_mismatches} NaN/inf differ"
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
    from tflite_inverter.conversion.pipeline import io_plans
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
        plans = invocations(model, plans)
        spread: list[Any] = []
        weak: list[str] = []
        info: dict[str, str] = {}
        feeds, refs, notes = reference_outputs(str(path), plans, None, spread=spread, weak=weak, model=model,
                                               info=info)
    except InterpreterError as exc:
        return Row(name, "rebuilt, no reference", f"rebuilt; {str(exc)[:300]}", seconds=time.time() - start)
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
    checks = [c for p, ref, out, alt, why in zip(plans, refs, outs, spread, weak)
              for c in compare_plan(model, p, ref, out, alt, weak=why)]
    # nothing compared is not a match, nor is a weak verification
    status = {"ok": "match", "FAIL": "MISMATCH", "weak": "weak", "not verified": "not verified"}[check_status(checks)]
    detail = _summary(checks) + "".join(f" [{n}]" for n in notes)
    return Row(name, status, detail or "no output to compare", [c.to_json() for c in checks], time.time() - start,
               info.get("reference", ""))


def supervised_rows(files: list[Path], onednn: str | None = None, save: bool = False,
                    each: Callable[[Row], None] | None = None) -> list[Row]:
    """``convert_one`` of every file in a TensorFlow child process (``onednn``: its
    TF_ENABLE_ONEDNN_OPTS, None to inherit); a file that kills the child (a TensorFlow crash) or
    exceeds a cap becomes its own CRASH row, and the next file gets a new child."""
    from tflite_inverter.isolation import Worker

    rows = []
    env = {} if onednn is None else {"TF_ENABLE_ONEDNN_OPTS": onednn}
    one = convert_one
    if convert_one.__module__ == "__main__":  # run as a script: the child imports it by module name
        from benchmarks.corpus import convert_one as one
    with Worker(env=env) as worker:
        for f in files:
            start = time.time()
            try:
                row = worker.call(one, {"path": f, "save": save}, model=f.name, what="converting")
            except InverterError as exc:
                row = Row(f.name, "CRASH", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          seconds=time.time() - start)
            if each is not None:
                each(row)
            rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    lines = ["| file | status | reference | detail | s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.file.removesuffix('.tflite')} | {r.status} | {r.reference or '-'} | "
                     f"{r.detail.replace('|', '/')} | {r.seconds:.1f} |")
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
