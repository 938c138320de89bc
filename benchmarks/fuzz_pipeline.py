"""Hostile input through the whole pipeline: seeded mutations of corpus files through ``convert`` and
``quantize --calib random``, each run as its own CLI subprocess.

    python benchmarks/fuzz_pipeline.py [--convert 1000] [--quantize 200] [--seed 0] [--jobs 1]
        [--files GLOB] [--max-bytes 1000000] [--only c17,q3] [--json OUT.json] [--verbose]

The reader alone is fuzzed by tests/test_bad_input.py; a file can pass validation and still declare
activations of 2^40 elements, loop, or feed TensorFlow shapes it crashes on. Each case takes one
corpus file (``../shared/models``, or ``$TFLITE_INVERTER_CORPUS``; the files under ``--max-bytes``) and
applies one mutation:

- ``bits``: flip 1-8 bits, 3 in 4 cases outside constant data (tables, vtables, offsets, vectors);
- ``truncate``: cut the file at a random byte;
- ``word``: write 1-3 hostile 32-bit words (0x7fffffff, 0xffffffff, 0x80000000, ...) at 4-aligned offsets;
- ``shape``: set 1-2 entries of real ``Tensor.shape`` / ``shape_signature`` vectors (located with the
  project's bounds-checked flatbuffer walker; 3 in 4 times of a tensor without data, whose size only
  the runtime sees) to a huge value (45 %), as large as keeps the tensor at 2^26 elements (25 %), a
  small value (15 %), 0 (10 %) or -1 (5 %);
- ``quant``: set one quantization scale to NaN/inf/0/negative/huge, or one zero point to a huge value.

Case ``cN`` runs ``python -m tflite_inverter.cli convert MUT -o OUT``, case ``qN`` runs
``quantize MUT -o OUT.tflite --calib random --samples 8`` (8 samples keep slow models inside the timeout); case N's mutation depends only on ``--seed``, N and the
file list (``--files``, ``--max-bytes``), so ``--seed S --only cN`` reproduces it. Each run gets a 60 s
timeout, a scratch output folder and its own ``TMPDIR``; mutated files live in a temporary folder that
is removed at the end (nothing is copied into the repository).

Classes: ``clean`` (exit 0, or a documented code 2..11 with a ``tflite-inverter: ...`` error line),
``traceback`` (a Python traceback or exit 1), ``bad-exit`` (another code, or a documented code with no
error line), ``signal`` (killed by a signal), ``hang`` (timeout), ``memory`` (killed by this script for
holding more than ``--max-rss-mb``, the machine being shared), ``temp-litter`` (otherwise clean, but a
``.tflite-inverter-*`` folder or ``.*.tmp`` file was left in the output folder or a temp dir).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tflite_inverter.model.flatbuf import FlatbufferDecoder  # noqa: E402
from tflite_inverter.model.reader import read_model  # noqa: E402
from tflite_inverter.model.schema import bundled_schema  # noqa: E402

CORPUS = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))
TIMEOUT = 60.0
#: Calibration samples of a quantize run (the default 64 make a 1 MB segmentation model take ~50 s).
QUANTIZE_SAMPLES = 8
#: A run whose process group holds more than this is killed (the machine is shared); class ``memory``.
MAX_RSS = 6 * 2**30
#: The tool's own cap (TFLITE_INVERTER_MEMORY_LIMIT) in each run, below MAX_RSS so that the tool's named
#: exit 10 is what a memory-hungry file meets; the watchdog above is the backstop.
MEMORY_LIMIT = "3G"
#: Documented exit codes (errors.py; 9: TensorFlow crashed/failed running the model, 10: a memory/time
#: limit, 11: nothing compared, NOT verified).
DOCUMENTED = frozenset(range(2, 12))
HOSTILE_WORDS = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x40000000, 0x0000FFFF, 0x7FFFFFFE)
HUGE_DIMS = (2**31 - 1, 2**30, 2**24, 2**20, 65536)
SMALL_DIMS = (1, 2, 3, 7)
#: Element count of a "big but allowed" shape mutation (256 MB of float32).
BIG_ELEMENTS = 2**26
BAD_SCALES = (float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e30, 1e-40)
BAD_ZERO_POINTS = (2**40, -(2**40), 2**31 - 1, -(2**31), 2**63 - 1)
KINDS = ("bits", "truncate", "word", "shape", "quant")
KIND_WEIGHTS = (0.3, 0.1, 0.25, 0.25, 0.1)
ERROR_LINE = re.compile(r"^tflite-inverter: (error|[A-Z]\w*(Error|Exceeded|Crashed)\b)")
LITTER = (".tflite-inverter-*", ".*.tmp")


# -- locating what to mutate -----------------------------------------------------------------------


@dataclass(frozen=True)
class Vec:
    """A scalar vector inside the file: ``path`` (e.g. ``Model.subgraphs[0].tensors[3].shape``),
    absolute byte offset of element 0, element count and element size."""

    path: str
    start: int
    length: int
    itemsize: int


class _Locator(FlatbufferDecoder):
    """The project's bounds-checked decoder, recording where every scalar vector lives."""

    def __init__(self, buf: Any):
        super().__init__(buf, bundled_schema())
        self.vectors: list[Vec] = []

    def vector(self, v: int, elem: Any, path: str, depth: int) -> Any:
        out = super().vector(v, elem, path, depth)
        if isinstance(out, np.ndarray):
            self.vectors.append(Vec(path, v + 4, int(out.size), out.dtype.itemsize))
        return out


@dataclass
class Target:
    """One corpus file and what the mutations aim at."""

    path: Path
    data: bytes
    structure: np.ndarray  # byte offsets outside constant data
    shapes: list[Vec]
    activation_shapes: list[Vec]  # shapes of tensors without data: only the runtime sees their size
    scales: list[Vec]
    zero_points: list[Vec]


def load_target(path: Path) -> Target:
    data = path.read_bytes()
    keep = np.ones(len(data), bool)
    model = read_model(data)
    for b in model.buffers:
        keep[b.offset:b.offset + b.size] = False
    consts = {f"Model.subgraphs[{sg.index}].tensors[{t.index}]" for sg in model.subgraphs for t in sg.tensors
              if t.is_constant}
    loc = _Locator(data)
    loc.root()
    vecs = [v for v in loc.vectors if v.length]
    shapes = [v for v in vecs if v.path.endswith((".shape", ".shape_signature")) and ".tensors[" in v.path]
    return Target(
        path=path, data=data, structure=np.flatnonzero(keep), shapes=shapes,
        activation_shapes=[v for v in shapes if v.path.rsplit(".", 1)[0] not in consts],
        scales=[v for v in vecs if v.path.endswith(".quantization.scale")],
        zero_points=[v for v in vecs if v.path.endswith(".quantization.zero_point")])


def pick_files(files: str | None, max_bytes: int, corpus: Path = CORPUS) -> list[Path]:
    """Corpus files under ``max_bytes`` (sorted), optionally filtered by a glob on the name or path."""
    if files and ("/" in files):
        found = sorted(Path(p) for p in __import__("glob").glob(files))
    else:
        found = sorted(corpus.glob("*.tflite")) if corpus.is_dir() else []
        if files:
            found = [p for p in found if fnmatch.fnmatch(p.name, files)]
    return [p for p in found if p.is_file() and 8 <= p.stat().st_size <= max_bytes]


# -- mutations ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    file: str
    kind: str
    description: str
    data: bytes = field(repr=False)


def _offset(rng: np.random.Generator, t: Target, align: int = 1) -> int:
    n = len(t.data)
    pool = t.structure if rng.random() < 0.75 and t.structure.size else None
    pos = int(pool[int(rng.integers(pool.size))]) if pool is not None else int(rng.integers(n))
    pos -= pos % align
    return min(pos, n - align)


def mutate(t: Target, rng: np.random.Generator, kind: str | None = None) -> Mutation:
    """One seeded mutation of ``t`` (``kind`` forces a mutation kind; shape/quant fall back to word
    when the file has no such vectors)."""
    if kind is None:
        kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
    if kind == "shape" and not t.shapes:
        kind = "word"
    if kind == "quant" and not (t.scales or t.zero_points):
        kind = "word"
    buf = bytearray(t.data)
    name = t.path.name
    if kind == "bits":
        parts = []
        for _ in range(int(rng.integers(1, 9))):
            pos, bit = _offset(rng, t), int(rng.integers(8))
            buf[pos] ^= 1 << bit
            parts.append(f"[{pos}]^=0x{1 << bit:02x}")
        return Mutation(name, kind, "flip " + ", ".join(parts), bytes(buf))
    if kind == "truncate":
        cut = int(rng.integers(8, len(buf)))
        return Mutation(name, kind, f"truncate to {cut} of {len(buf)} bytes", bytes(buf[:cut]))
    if kind == "word":
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            pos = _offset(rng, t, 4)
            word = HOSTILE_WORDS[int(rng.integers(len(HOSTILE_WORDS)))]
            buf[pos:pos + 4] = word.to_bytes(4, "little")
            parts.append(f"[{pos}:{pos + 4}]=0x{word:08x}")
        return Mutation(name, kind, "write " + ", ".join(parts), bytes(buf))
    if kind == "shape":
        parts = []
        for _ in range(int(rng.integers(1, 3))):
            pool = t.activation_shapes if t.activation_shapes and rng.random() < 0.75 else t.shapes
            v = pool[int(rng.integers(len(pool)))]
            k = int(rng.integers(v.length))
            pos = v.start + 4 * k
            old = int.from_bytes(buf[pos:pos + 4], "little", signed=True)
            dims = np.frombuffer(bytes(buf[v.start:v.start + 4 * v.length]), "<i4").astype(np.int64)
            rest = int(np.prod(np.maximum(np.delete(dims, k), 1)))
            r = rng.random()
            if r < 0.05:
                new = -1
            elif r < 0.15:
                new = 0
            elif r < 0.3:
                new = SMALL_DIMS[int(rng.integers(len(SMALL_DIMS)))]
            elif r < 0.55:  # as large as keeps the tensor at BIG_ELEMENTS: passes the reader's bound
                new = max(2, min(2**31 - 1, BIG_ELEMENTS // max(rest, 1)))
            else:
                new = HUGE_DIMS[int(rng.integers(len(HUGE_DIMS)))]
            buf[pos:pos + 4] = new.to_bytes(4, "little", signed=True)
            parts.append(f"{v.path}[{k}] {old} -> {new}")
        return Mutation(name, kind, "; ".join(parts), bytes(buf))
    # quant
    use_scale = bool(t.scales) and (not t.zero_points or rng.random() < 0.6)
    v = (t.scales if use_scale else t.zero_points)[int(rng.integers(len(t.scales if use_scale else t.zero_points)))]
    k = int(rng.integers(v.length))
    pos = v.start + v.itemsize * k
    if use_scale:
        val: float | int = BAD_SCALES[int(rng.integers(len(BAD_SCALES)))]
        old: float | int = float(np.frombuffer(bytes(buf[pos:pos + 4]), "<f4")[0])
        buf[pos:pos + 4] = np.float32(val).tobytes()
    else:
        val = BAD_ZERO_POINTS[int(rng.integers(len(BAD_ZERO_POINTS)))]
        old = int(np.frombuffer(bytes(buf[pos:pos + 8]), "<i8")[0])
        buf[pos:pos + 8] = np.int64(val).tobytes()
    return Mutation(name, "quant", f"{v.path}[{k}] {old} -> {val}", bytes(buf))


def case_rng(seed: int, command: str, n: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0 if command == "convert" else 1, n])


def make_case(targets: Sequence[Target], seed: int, command: str, n: int) -> Mutation:
    """Case ``n`` of ``command``: which file and which mutation depend only on (seed, command, n, files)."""
    rng = case_rng(seed, command, n)
    return mutate(targets[int(rng.integers(len(targets)))], rng)


# -- running one case -------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: str
    file: str
    kind: str
    mutation: str
    cls: str
    exit_code: int | None
    seconds: float
    first_line: str = ""
    litter: list[str] = field(default_factory=list)
    stderr_tail: str = ""


def _litter(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(str(p) for pat in LITTER for p in folder.glob(pat))


def classify(returncode: int | None, stderr: str, timed_out: bool, litter: list[str]) -> tuple[str, str]:
    """(class, first line worth printing) of one run."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    err = next((ln for ln in lines if ERROR_LINE.match(ln)), "")
    if timed_out:
        return "hang", (lines[-1] if lines else "")[:300]
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return "signal", sig
    if "Traceback (most recent call last)" in stderr or returncode == 1:
        last = next((ln for ln in reversed(lines) if not ln.startswith(" ")), "")
        return "traceback", last[:300]
    if returncode != 0 and (returncode not in DOCUMENTED or not err):
        return "bad-exit", f"exit {returncode}: {(err or (lines[-1] if lines else ''))[:280]}"
    if litter:
        return "temp-litter", litter[0]
    return "clean", err[:300]


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group ``pgid`` (Linux /proc; 0 elsewhere)."""
    total = 0
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_case(mut: Mutation, command: str, case: str, scratch: Path, python: str,
             timeout: float = TIMEOUT, max_rss: int = MAX_RSS) -> Outcome:
    """Write the mutated file into ``scratch/case``, run the CLI on it, classify what happened
    (a run over ``timeout`` seconds or ``max_rss`` resident bytes is killed)."""
    work = scratch / case
    work.mkdir(parents=True)
    src, out, tmp = work / "in.tflite", work / "out", work / "tmp"
    out.mkdir()
    tmp.mkdir()
    src.write_bytes(mut.data)
    if command == "convert":
        args = ["convert", str(src), "-o", str(out / "saved")]
    else:
        args = ["quantize", str(src), "-o", str(out / "q.tflite"), "--calib", "random", "--samples",
                str(QUANTIZE_SAMPLES)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("TFLITE_INVERTER_MEMORY_LIMIT", MEMORY_LIMIT)
    sys_tmp = Path(tempfile.gettempdir())
    before = set(_litter(sys_tmp))
    start = time.time()
    proc = subprocess.Popen([python, "-m", "tflite_inverter.cli", *args], cwd=str(work), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    timed_out, peak = False, 0
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read() if proc.stderr else b""))
    reader.start()
    while proc.poll() is None:  # watch time and the memory of the run's whole process group
        peak = max(peak, _group_rss(proc.pid))
        if time.time() - start > timeout or peak > max_rss:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    reader.join()
    seconds = time.time() - start
    stderr = b"".join(chunks).decode("utf-8", "replace")
    litter = _litter(out) + _litter(tmp) + sorted(set(_litter(sys_tmp)) - before)
    cls, first = classify(proc.returncode, stderr, timed_out, litter)
    if timed_out and peak > max_rss:
        cls, first = "memory", f"killed at {peak / 2**20:.0f} MB resident ({first})"
    shutil.rmtree(work, ignore_errors=True)
    return Outcome(case, mut.file, mut.kind, mut.description, cls, None if timed_out else proc.returncode,
                   round(seconds, 2), first, litter, stderr[-3000:] if cls != "clean" else "")


# -- driver ---------------------------------------------------------------------------------------------


def _parse_only(only: str | None) -> list[tuple[str, int]] | None:
    if not only:
        return None
    out = []
    for item in only.split(","):
        m = re.fullmatch(r"\s*([cq])(\d+)\s*", item)
        if not m:
            raise SystemExit(f"--only {item!r}: expected case ids like c17 or q3")
        out.append(("convert" if m.group(1) == "c" else "quantize", int(m.group(2))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--convert", type=int, default=1000, metavar="N", help="convert cases (default 1000)")
    p.add_argument("--quantize", type=int, default=200, metavar="N",
                   help="quantize --calib random cases (default 200)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--only", metavar="IDS", help="run only these cases, e.g. c17,q3 (same --seed/--files/--max-bytes)")
    p.add_argument("--files", metavar="GLOB", help="corpus file names matching GLOB (or a path glob containing /)")
    p.add_argument("--max-bytes", type=int, default=1_000_000, help="skip files larger than this (default 1 MB)")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (default 1)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per run (default {TIMEOUT:.0f})")
    p.add_argument("--max-rss-mb", type=int, default=MAX_RSS // 2**20,
                   help=f"kill a run holding more resident memory (default {MAX_RSS // 2**20})")
    p.add_argument("--memory-limit", default=os.environ.get("TFLITE_INVERTER_MEMORY_LIMIT", MEMORY_LIMIT),
                   help="the tool's own cap in each run (TFLITE_INVERTER_MEMORY_LIMIT; default "
                        f"{MEMORY_LIMIT}, below the watchdog, so a hungry file meets the tool's exit 10)")
    p.add_argument("--json", metavar="OUT", help="write every outcome as JSON")
    p.add_argument("--verbose", action="store_true", help="print the stderr tail of each non-clean case")
    args = p.parse_args(argv)
    os.environ["TFLITE_INVERTER_MEMORY_LIMIT"] = args.memory_limit

    paths = pick_files(args.files, args.max_bytes)
    targets = []
    for path in paths:
        try:
            targets.append(load_target(path))
        except Exception as exc:  # noqa: BLE001 - a corpus file we cannot read is not a seed
            print(f"skip {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not targets:
        print("no corpus files (set TFLITE_INVERTER_CORPUS or --files)", file=sys.stderr)
        return 2
    cases = _parse_only(args.only) or ([("convert", n) for n in range(args.convert)]
                                       + [("quantize", n) for n in range(args.quantize)])
    print(f"{len(cases)} cases over {len(targets)} files (seed {args.seed})", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-pipeline-"))
    outcomes: list[Outcome] = []
    start = time.time()

    def one(item: tuple[str, int]) -> Outcome:
        command, n = item
        cid = f"{command[0]}{n}"
        return run_case(make_case(targets, args.seed, command, n), command, cid, scratch, sys.executable,
                        args.timeout, args.max_rss_mb * 2**20)

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for k, o in enumerate(pool.map(one, cases), 1):
                outcomes.append(o)
                if o.cls != "clean" or args.only:
                    print(f"  {o.case} [{o.cls}] {o.file} ({o.mutation[:120]}): {o.first_line}", flush=True)
                    if args.verbose and o.stderr_tail:
                        print("    " + o.stderr_tail.replace("\n", "\n    "))
                if k % 25 == 0:
                    print(f"  ... {k}/{len(cases)} ({time.time() - start:.0f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("files", args.files), ("max_bytes", args.max_bytes))
                    if v is not None and not (k == "max_bytes" and v == 1_000_000))
    for command in ("convert", "quantize"):
        mine = [o for o in outcomes if o.case[0] == command[0]]
        if not mine:
            continue
        counts = Counter(o.cls for o in mine)
        codes = Counter(o.exit_code for o in mine if o.cls == "clean")
        print(f"\n{command}: {len(mine)} runs: " + ", ".join(f"{c} {counts[c]}" for c in
              ("clean", "traceback", "bad-exit", "signal", "hang", "memory", "temp-litter") if counts[c] or c == "clean")
              + "; clean exit codes: " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items(), key=lambda x: x[0] or 0)))
        for o in mine:
            if o.cls != "clean":
                print(f"  {o.cls:11s} --seed {args.seed} --only {o.case}{extra}  [{o.file}: {o.mutation[:100]}]\n"
                      f"              {o.first_line}")
    print(f"\n{time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seed": args.seed, "files": [t.path.name for t in targets],
                       "outcomes": [asdict(o) for o in outcomes]}, fh, indent=1)
    return 0 if all(o.cls == "clean" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
