"""Convert time and peak memory per corpus model (each conversion in a fresh process).

    python benchmarks/bench_convert.py [FILES...]     (default: every file of ../shared/models)

Columns: wall time of the whole ``convert`` (read, rebuild, save, verify with the interpreter in a
child process), peak RSS of the converting process (the interpreter child is not included), and the
outcome. Files we do not rebuild are listed with their status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))

CHILD = r"""
import json, resource, sys, time
from tflite_inverter import convert, InverterError
t = time.time()
try:
    r = convert(sys.argv[1], sys.argv[2])
    status = "verified" if r.passed else "over tolerance"
except InverterError as e:
    status = type(e).__name__
print(json.dumps({"status": status, "seconds": time.time() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted(CORPUS.glob("*.tflite"))
    print("| file | MB | status | convert s | wall s (incl. start-up) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for f in files:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(f), os.path.join(tmp, "sm")],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
            wall = time.time() - start
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            data = {"status": f"crashed ({proc.returncode})", "seconds": float("nan"), "peak_rss_mb": float("nan")}
        print(f"| {f.name.removesuffix('.tflite')} | {f.stat().st_size / 2**20:.2f} | {data['status']} | "
              f"{data['seconds']:.1f} | {wall:.1f} | {data['peak_rss_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
