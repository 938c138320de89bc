"""The ``quantize`` subcommand."""

from __future__ import annotations

import argparse
import sys

from .common import add_command, add_input_shape_flag, print_progress

#: The command's ``--help`` description.
DESCRIPTION = """\
Re-quantize SOURCE (a .tflite, rebuilt on the fly as a clean float graph, or a SavedModel written by `convert
--float-io --no-fake-quant`) with TensorFlow's converter, calibrated on your data. The last 20% of the
calibration samples are held back and the result is compared with the float model on them: SQNR, cosine
similarity, max abs error, top-1 agreement for classifiers; plus size before/after and a check that an int8
model has no float op left. An already-quantized .tflite given without --calib is requantized with its own
recorded scales and zero points ('reuse source ranges'): same form as the source by default (int8 or all-
uint8, per-channel or per-tensor weights, its I/O types), weights bit-identical, and the result is compared
with the SOURCE in the interpreter (outputs in source LSBs, every constant bit for bit). The result keeps a
.tflite source's interface: the same inputs and outputs in the same order, with the same names and shapes, the
same SignatureDefs (none if it had none), its metadata (TFLite Support TFLITE_METADATA, ...) and any
associated-files zip appended to it; I/O types that change (--io, --target) are printed. A SavedModel source
keeps the SavedModel's signature names. Every bound the report checks is listed as 'check NAME: ok/FAIL'; a
failed one exits 6 (7 when the interpreter could not run the comparison) with the model still written."""


def _cmd_quantize(args: argparse.Namespace) -> int:
    from ..quantization.pipeline import quantize

    result = quantize(args.source, args.output, calib=args.calib, dtype=args.dtype, io=args.io,
                      granularity=args.granularity, target=args.target, mean=args.mean, std=args.std,
                      samples=args.samples, report=args.report, force=args.force, progress=print_progress,
                      progress_bar=sys.stderr.isatty(), input_shapes=args.input_shape)
    print(result.format_text())
    print(f"{result.dtype} model written to {result.output} ({result.size_after} bytes; "
          f"{result.seconds.get('total', 0.0):.1f} s)" + (f"; report: {args.report}" if args.report else ""))
    return 0


def add_quantize(sub: argparse._SubParsersAction) -> None:
    from ..quantization.recipe import DTYPES, GRANULARITIES, IO_TYPES, TARGETS

    p = add_command(
        sub, "quantize", "re-quantize a .tflite or SavedModel (int8, int16x8, float16, ...) with an accuracy report",
        DESCRIPTION, _cmd_quantize, ("source", "a .tflite file or a SavedModel folder"),
        ("OUT.tflite", "the .tflite to write", "also write the report as JSON",
         "replace OUT.tflite / R.json if they exist"))
    p.add_argument("--calib", metavar="DATA",
                   help="calibration data: X.npy (one input, N samples stacked), X.npz (keyed by input name), a "
                   "folder of images, or 'random' (smoke tests only: warned about). Several signatures: .npz keys "
                   "'signature/input' (a bare 'input' feeds every signature having it). Omit it for an already-quantized "
                   ".tflite to reuse the source's own activation ranges and weights (per-tensor int8/uint8 "
                   "activations only; int16x8 sources need DATA)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="int8: full integer, int8 kernels only (default; without --calib, a quantized source's own "
                   "form: int8, or uint8 for an all-uint8 source); int16x8: int16 activations, int8 weights; "
                   "float16: float16 weights; dynamic: dynamic-range int8 weights; float32: plain float; uint8: "
                   "every tensor asymmetric uint8, per-tensor (legacy NPU stacks)")
    p.add_argument("--io", choices=IO_TYPES, default=None,
                   help="model input/output type (default: the source's own, so the result is a drop-in "
                   "replacement: a float model keeps float32 I/O around integer kernels; where the recipe cannot "
                   "give it, int8 for --dtype int8, uint8 for uint8, else float32, and the change is printed; "
                   "int16 for int16x8). With --target imx8mp the input is uint8 and --io sets the output (default "
                   "uint8)")
    p.add_argument("--granularity", choices=GRANULARITIES, default=None,
                   help="weight scales per output channel (default; uint8: per-tensor; reusing a quantized "
                   "source's ranges: the source's) or one per tensor; per-tensor also reports the accuracy of int8 "
                   "per-channel for comparison")
    p.add_argument("--target", choices=TARGETS, default=None,
                   help="imx8mp: full-integer int8 with uint8 input (camera path, VX delegate); imx8mp-nnapi: "
                   "true uint8 per-tensor (Android NNAPI, where int8 falls back to the CPU); either way the report "
                   "embeds the NPU placement prediction of `inspect --target imx8mp`")
    p.add_argument("--mean", metavar="M", default=None,
                   help="input normalization: real = (value - M) / S, one value or one per channel (\"a,b,c\"). "
                   "Applied to every float input, whatever the data: image pixels, integer or float .npy/.npz "
                   "arrays (taken as raw values, e.g. float pixels 0..255), and --calib random (then random uint8 "
                   "pixels 0..255, normalized, so the range is that of normalized images). Integer inputs are fed as "
                   "stored; a model with no float input refuses --mean/--std (exit 2)")
    p.add_argument("--std", metavar="S", default=None, help="see --mean")
    add_input_shape_flag(p, "calibration (--calib random, image folders, checking .npy/.npz samples) and "
                         "evaluation")
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="use the first N samples (with 'random': make N)")
