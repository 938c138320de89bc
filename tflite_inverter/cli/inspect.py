"""``tflite-inverter inspect``: the op-coverage report (TensorFlow-free)."""

from __future__ import annotations

import argparse
import sys

from .common import add_command

#: The command's ``--help`` description.
DESCRIPTION = """\
Report what a .tflite contains and what will survive: model size, subgraphs, signatures with I/O
names/shapes/dtypes/quantization, an op histogram per subgraph, each op type's quantization kind and whether
tflite-inverter can rebuild it. With --target imx8mp, predicts per op whether the i.MX8M Plus NPU (VX
delegate) or the CPU runs it, and why. Does not import TensorFlow (except to check the attributes of Flex ops
against TensorFlow's op definitions)."""


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..coverage.report import build_report, render_report
    from ..model.reader import read_model

    model = read_model(args.model)
    report = build_report(model, target=args.target)
    sys.stdout.write(render_report(report, args.format))
    return 0


def add_inspect(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "inspect", "op-coverage report: ops, quantization, rebuild support, NPU placement",
        DESCRIPTION, _cmd_inspect, ("model", "path to a .tflite file"))
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="text (default): readable tables; markdown; json: deterministic, machine-readable")
    from ..coverage.targets import available as available_targets

    p.add_argument("--target", choices=available_targets(), default=None,
                   help="also predict, per operator, NPU vs CPU placement on this target (imx8mp: NXP "
                   "i.MX 8M Plus NPU through the VX delegate; float ops count as CPU by policy)")
