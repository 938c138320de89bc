"""Command-line interface: a thin layer over the Python API.

Commands: inspect (op coverage, NPU placement), convert (.tflite -> verified SavedModel), quantize
(full-integer int8/uint8 and other forms, with an accuracy report).

Exit codes: 0 success; 2 usage; 3 unreadable file; 4 invalid model; 5 unsupported ops;
6 a written result fails its check (convert: an output over its rule's threshold; quantize: a check
of the report); 7 the TFLite interpreter cannot run the original, so the written result is not
verified; 8 output exists; 9 TensorFlow crashed running the model; 10 a memory or time cap was
exceeded; 11 nothing to compare, so the written result is not verified; 130 interrupted (Ctrl-C),
143 terminated (SIGTERM): in every case nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .errors import InverterError, ResourceLimitError

EPILOG = """exit codes: 0 ok (convert: also a WEAK verification, on inputs the graph gave no valid values for,
printed as WEAK and never counted as a match), 2 usage, 3 unreadable file, 4 invalid model, 5 unsupported ops,
6 check failed: convert: an output over its rule's threshold; quantize: a check of the report (float op
left, uint8 result without kernel or not running, reused ranges: activations/weights not the source's
or an output element beyond 1 LSB of the source); the output is still written,
7 the interpreter cannot run the original (output written, NOT verified), 8 output exists (use --force),
9 TensorFlow crashed running the model (a child process; the tool survives), 10 memory/time cap exceeded
(TFLITE_INVERTER_MEMORY_LIMIT, default 80% of RAM, also this process's soft limit, e.g. 8G, 0 none; TFLITE_INVERTER_TIMEOUT, seconds),
11 no output to compare (output written, NOT verified), 130 interrupted, 143 terminated"""


def add_input_shape_flag(p: argparse.ArgumentParser, used_for: str) -> None:
    """``--input-shape``, shared by convert and quantize (parsed by :mod:`.input_shapes`)."""
    p.add_argument("--input-shape", action="append", default=None, metavar="[NAME=]D1xD2...",
                   help=f"the shape to feed an input with dynamic dims ('?' in `inspect`) for {used_for}, e.g. "
                   "audio=1x16000; repeat per input; NAME (the input's TFLite or SavedModel signature name, like "
                   "--inputs keys; SIGNATURE/NAME for one signature) may be omitted for a single-input model. Must "
                   "have the input's rank and agree with its static dims; the written model keeps the dims dynamic. "
                   "Default: each dynamic dim is 1")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .reader import read_model
    from .report import build_report, render_report

    model = read_model(args.model)
    report = build_report(model, target=args.target)
    sys.stdout.write(render_report(report, args.format))
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="op-coverage report: ops, quantization, rebuild support, NPU placement",
        description="Report what a .tflite contains and what will survive: model size, subgraphs, "
        "signatures with I/O names/shapes/dtypes/quantization, an op histogram per subgraph, each op "
        "type's quantization kind and whether tflite-inverter can rebuild it. With --target imx8mp, "
        "predicts per op whether the i.MX8M Plus NPU (VX delegate) or the CPU runs it, and why. "
        "Does not import TensorFlow (except to check the attributes of Flex ops against TensorFlow's op definitions).",
        epilog=EPILOG,
    )
    p.add_argument("model", help="path to a .tflite file")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="text (default): readable tables; markdown; json: deterministic, machine-readable")
    from .targets import available as available_targets

    p.add_argument("--target", choices=available_targets(), default=None,
                   help="also predict, per operator, NPU vs CPU placement on this target (imx8mp: NXP "
                   "i.MX 8M Plus NPU through the VX delegate; float ops count as CPU by policy)")
    p.set_defaults(func=_cmd_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflite-inverter",
        description="Bring vendor .tflite files back to life: inspect their ops, rebuild a verified "
        "TensorFlow SavedModel, re-quantize for integer NPUs.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_inspect(sub)
    # Imported here: these modules import cli (for EPILOG); none imports TensorFlow at import time.
    from .cli_convert import add_convert
    from .cli_quantize import add_quantize

    add_convert(sub)
    add_quantize(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM unwinds like Ctrl-C: temp files are removed
    from .isolation import MEMORY_ENV, apply_memory_limit

    warning = apply_memory_limit()  # this process too: a hostile file's declared sizes reach numpy here
    if warning:
        print(f"tflite-inverter: {warning}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except InverterError as exc:
        print(f"tflite-inverter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except MemoryError:
        err = ResourceLimitError(f"out of memory under the address-space cap ({MEMORY_ENV}) while working on "
                                 f"{getattr(args, 'model', None) or 'the model'}; the file declares more data "
                                 "than fits, or raise the cap")
        print(f"tflite-inverter: error: {err}", file=sys.stderr)
        return err.exit_code
    except _Terminated:
        print("tflite-inverter: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("tflite-inverter: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler, so every ``except BaseException`` clean-up runs."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


if __name__ == "__main__":
    sys.exit(main())
