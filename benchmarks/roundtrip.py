"""Round trip without garbage: rebuild a .tflite, save it, convert it back with a plain
TFLiteConverter, and compare op histograms side by side.

    python benchmarks/roundtrip.py [FILES...]      (default: the float models of ../shared/models)

The goal: no op type occurs more often after the round trip than in the original (fusions that
remove ops are welcome). Rows with an increase are marked ``EXTRA``; an op that comes back as one
other op of the same meaning (``RENAMES``, e.g. SELECT -> SELECT_V2) is listed as renamed instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_inverter.errors import InverterError  # noqa: E402
from tflite_inverter.model.reader import read_model  # noqa: E402

CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))


def histogram(model) -> Counter:
    return Counter(op.key for sg in model.subgraphs for op in sg.operators)


def is_float_model(model) -> bool:
    return not any(t.is_quantized for sg in model.subgraphs for t in sg.tensors)


def roundtrip(path: Path) -> tuple[Counter, Counter] | str:
    """(original histogram, round-trip histogram), or the reason it could not be done."""
    from tflite_inverter._tf import tf
    from tflite_inverter.rebuild import make_module

    try:
        model = read_model(path)
        module = make_module(model)
    except InverterError as exc:
        return str(exc).splitlines()[0][:120]
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(module.concrete))
        try:
            back = conv.convert()
        except Exception as exc:  # noqa: BLE001 - report the converter's refusal in the table
            return f"converter failed: {str(exc).splitlines()[0][:120]}"
    return histogram(model), histogram(read_model(back))


#: One op coming back as ONE other op of the same meaning is a rename, not garbage: the converter
#: writes the newer or builtin form (or rewrites a division by a constant as a multiplication). An
#: op that vanishes from the original may account for one occurrence of its replacement.
RENAMES: dict[str, tuple[str, ...]] = {
    "CUSTOM:Convolution2DTransposeBias": ("TRANSPOSE_CONV",),
    "CUSTOM:LiteRtMaxUnpooling2D": ("CUSTOM:MaxUnpooling2D",),
    "CUSTOM:FlexMultinomial": ("MULTINOMIAL",),
    "SELECT": ("SELECT_V2",),
    # constant padding is emitted as PadV2 (see ops/common.constant_pad: oneDNN mis-fuses Pad into
    # convolutions); PADV2 is the same kernel as PAD with the pad value given explicitly
    "PAD": ("PADV2",),
    "SQUEEZE": ("RESHAPE",),
    "EXPAND_DIMS": ("RESHAPE",),
    "EMBEDDING_LOOKUP": ("GATHER",),
    "DIV": ("MUL",),
    # converter fusions that replace a group: a BATCH_MATMUL by a constant becomes FULLY_CONNECTED,
    # the tanh-approximated GELU pattern (TANH + MUL/ADD) becomes one GELU
    "BATCH_MATMUL": ("FULLY_CONNECTED",),
    "TANH": ("GELU",),
}


def compare(before: Counter, after: Counter) -> tuple[dict, dict, dict]:
    """(extra, fewer, renamed): ops that occur more often after the round trip (after crediting
    renames), ops that occur less often, and the renames credited (``"A->B": count``)."""
    credit: Counter = Counter()
    renamed: dict[str, int] = {}
    for src, targets in RENAMES.items():
        gone = before.get(src, 0) - after.get(src, 0)
        for dst in targets:
            grown = after.get(dst, 0) - before.get(dst, 0) - credit[dst]
            n = min(gone, grown)
            if n > 0:
                credit[dst] += n
                gone -= n
                renamed[f"{src}->{dst}"] = n
    extra = {k: (before.get(k, 0), v) for k, v in after.items() if v - credit[k] > before.get(k, 0)}
    fewer = {k: (v, after.get(k, 0)) for k, v in before.items() if after.get(k, 0) < v}
    return extra, fewer, renamed


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [p for p in sorted(CORPUS.glob("*.tflite"))]
    print("| file | original ops | round-trip ops | extra (op: before -> after) | fewer |")
    print("|---|---|---|---|---|")
    n_ok = n_extra = 0
    for f in files:
        try:
            m = read_model(f)
        except InverterError:
            continue
        if not argv and not is_float_model(m):
            continue
        res = roundtrip(f)
        name = f.name.removesuffix(".tflite")
        if isinstance(res, str):
            print(f"| {name} | {sum(histogram(m).values())} | - | not rebuilt: {res} | |")
            continue
        before, after = res
        extra, fewer, renamed = compare(before, after)
        n_extra += bool(extra)
        n_ok += not extra
        ex = ", ".join(f"{k}: {a}->{b}" for k, (a, b) in sorted(extra.items())) or "none"
        if renamed:
            ex += " (renamed: " + ", ".join(f"{k} x{n}" for k, n in sorted(renamed.items())) + ")"
        fw = ", ".join(f"{k}: {a}->{b}" for k, (a, b) in sorted(fewer.items()))
        print(f"| {name} | {sum(before.values())} | {sum(after.values())} | {'EXTRA ' if extra else ''}{ex} | {fw} |")
    print(f"\nround trips without extra ops: {n_ok}; with extra ops: {n_extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
