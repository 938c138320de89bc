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

from .._version import __version__
from ..errors import InverterError, ResourceLimitError
from .common import EPILOG
from .convert import add_convert
from .inspect import add_inspect
from .quantize import add_quantize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflite-inverter",
        description="Bring vendor .tflite files back to life: inspect their ops, rebuild a verified "
        "TensorFlow SavedModel, re-quantize for integer NPUs.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_inspect(sub)
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
    from ..isolation import MEMORY_ENV, apply_memory_limit

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
