"""What every command shares: the exit-code epilog, the sub-command set-up, the output flags and the
``--input-shape`` flag."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """exit codes: 0 ok (convert: also a WEAK verification, on inputs the graph gave no valid values for,
printed as WEAK and never counted as a match), 2 usage, 3 unreadable file, 4 invalid model, 5 unsupported ops,
6 check failed: convert: an output over its rule's threshold; quantize: a check of the report (float op
left, uint8 result without kernel or not running, reused ranges: activations/weights not the source's
or an output element beyond 1 LSB of the source); the output is still written,
7 the interpreter cannot run the original (output written, NOT verified), 8 output exists (use --force),
9 TensorFlow crashed running the model (a child process; the tool survives), 10 memory/time cap exceeded
(TFLITE_INVERTER_MEMORY_LIMIT, default 80% of RAM, also this process's soft limit, e.g. 8G, 0 none; TFLITE_INVERTER_TIMEOUT, seconds),
11 no output to compare (output written, NOT verified), 130 interrupted, 143 terminated"""


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, description: str, func: Any,
                operand: tuple[str, str], output: tuple[str, str, str, str] | None = None
                ) -> argparse.ArgumentParser:
    """A sub-command ``name`` running ``func(args)``, with the exit-code epilog under its ``--help``, its
    positional ``operand`` (name, help) and, for a command that writes, ``output`` = (metavar, help of
    ``-o/--output`` (required), of ``--report`` (JSON), of ``--force``)."""
    p = sub.add_parser(name, help=summary, description=description, epilog=EPILOG)
    p.set_defaults(func=func)
    p.add_argument(operand[0], help=operand[1])
    if output:
        metavar, what, report, force = output
        p.add_argument("-o", "--output", required=True, metavar=metavar, help=what)
        p.add_argument("--report", metavar="R.json", help=report)
        p.add_argument("--force", action="store_true", help=force)
    return p


def add_input_shape_flag(p: argparse.ArgumentParser, used_for: str) -> None:
    """``--input-shape``, shared by convert and quantize (parsed by :mod:`.input_shapes`)."""
    p.add_argument("--input-shape", action="append", default=None, metavar="[NAME=]D1xD2...",
                   help=f"the shape to feed an input with dynamic dims ('?' in `inspect`) for {used_for}, e.g. "
                   "audio=1x16000; repeat per input; NAME (the input's TFLite or SavedModel signature name, like "
                   "--inputs keys; SIGNATURE/NAME for one signature) may be omitted for a single-input model. Must "
                   "have the input's rank and agree with its static dims; the written model keeps the dims dynamic. "
                   "Default: each dynamic dim is 1")


def print_progress(msg: str) -> None:
    """The commands' progress printer: one ``tflite-inverter: ...`` line on stderr per message."""
    print(f"tflite-inverter: {msg}", file=sys.stderr, flush=True)
