"""Child process that runs the original model in TFLite Micro's Python interpreter (``tflite_micro``).

Run as ``python -m tflite_inverter.conversion._micro_child MODEL RUNS.json IN.npz OUT.npz``: the same files as
:mod:`._interp_child`, each run also naming ``input_pos`` / ``output_pos``, the positions of its
tensors in subgraph 0's inputs/outputs (TFLite Micro has no signature runner: it always runs
subgraph 0 and addresses its I/O by position, ``set_input(array, k)`` / ``get_output(k)``). It
imports only ``tflite_micro`` (not the stock interpreter, not TensorFlow), in its own process,
because a kernel can crash on a real file.

TFLite Micro is the second reference (see :func:`.reference.reference_outputs`): it registers the ops
the stock interpreter lacks for micro models (the ``Signal*`` audio front end) and kernels the stock
one misreads (int8 SVDF with int8 time weights and state). Its kernels are the reference kernels,
one kernel set, so no reference spread is measured.

TFLite Micro plans all tensors in one arena of a size fixed at construction. The arena starts at
:data:`ARENA_START` (or 16 x the file size, whichever is larger) and is doubled while the
interpreter reports that it is too small (``Failed to allocate ... memory``), up to
:data:`ARENA_MAX`; any other failure is reported at once. Its messages go to the C++ stderr, which
is captured per attempt and passed on. Exit codes: 0 done; 1 failure (last stderr line says why);
:data:`EXIT_NOT_INSTALLED` ``tflite_micro`` cannot be imported.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile

import numpy as np

ARENA_START = 1 << 20
ARENA_MAX = 1 << 30
EXIT_NOT_INSTALLED = 3
#: TFLite Micro's messages (micro_allocator.cc, single_arena_buffer_allocator.cc) when the arena is too small.
_ARENA_TOO_SMALL = re.compile(r"Failed to allocate (tail |head )?memory|Failed to allocate variable tensor|"
                              r"bytes required|missing: \d+", re.IGNORECASE)


def arena_too_small(log: str) -> bool:
    """True when TFLite Micro's log says its arena is too small (not a missing op or a bad model)."""
    return bool(_ARENA_TOO_SMALL.search(log))


def _with_captured_stderr(fn):
    """Run ``fn()`` with fd 2 (where TFLite Micro's C++ code writes) captured: (result or exception, log)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            try:
                result: object = fn()
            except Exception as exc:  # noqa: BLE001 - returned to the caller with the log
                result = exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        log = tmp.read().decode("utf-8", "replace")
    return result, log


def make_interpreter(runtime, model: bytes, start: int):
    """A TFLite Micro interpreter for ``model``, doubling the arena from ``start`` while it is too small."""
    arena = start
    while True:
        result, log = _with_captured_stderr(lambda a=arena: runtime.Interpreter.from_bytes(model, arena_size=a))
        if not isinstance(result, Exception):
            return result, arena
        lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
        if arena_too_small(log) and arena < ARENA_MAX:
            arena *= 2
            continue
        why = "; ".join(dict.fromkeys(lines))[:400] or str(result)
        if arena_too_small(log):
            why = f"the tensor arena is too small even at {ARENA_MAX >> 10} KiB ({why})"
        raise RuntimeError(f"TFLite Micro: {why} [{result}]")


def _run(interp, runs, inputs) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    for r, run in enumerate(runs):
        k = 0
        while f"r{r}_i{k}" in inputs:
            a = inputs[f"r{r}_i{k}"]
            pos = int(run["input_pos"][k])
            want = tuple(int(d) for d in interp.get_input_details(pos)["shape"])
            if tuple(a.shape) != want:
                raise ValueError(f"input {pos} has shape {list(want)} in TFLite Micro (which cannot resize "
                                 f"inputs); the verification input has shape {list(a.shape)}")
            interp.set_input(np.ascontiguousarray(a), pos)
            k += 1
        res, log = _with_captured_stderr(interp.invoke)
        if isinstance(res, Exception):
            lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
            raise RuntimeError(f"TFLite Micro: invoke failed ({'; '.join(lines)[:300] or res})")
        for j, pos in enumerate(run["output_pos"]):
            results[f"r{r}_o{j}"] = np.array(interp.get_output(int(pos)))
    return results


def main(argv: list[str]) -> int:
    model_path, runs_path, in_path, out_path = argv
    try:
        import tflite_micro
        from tflite_micro import runtime
    except ImportError as exc:
        print(f"tflite_micro is not installed ({exc})", file=sys.stderr)
        return EXIT_NOT_INSTALLED
    with open(runs_path) as fh:
        runs = json.load(fh)
    inputs = np.load(in_path, allow_pickle=False)
    with open(model_path, "rb") as fh:
        model = fh.read()
    try:
        interp, arena = make_interpreter(runtime, model, max(ARENA_START, 16 * len(model)))
        results = _run(interp, runs, inputs)
    except (RuntimeError, ValueError) as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    results["__kernels__"] = np.array(f"TFLite Micro reference kernels (arena {arena >> 10} KiB)")
    results["__reference__"] = np.array(f"tflite-micro {tflite_micro.__version__}")
    np.savez(out_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
