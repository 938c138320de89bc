"""The ``convert`` subcommand."""

from __future__ import annotations

import argparse

from .common import add_command, add_input_shape_flag, print_progress

#: The command's ``--help`` description.
DESCRIPTION = """\
Rebuild MODEL as a TF2 SavedModel (weights as tf.Variables, one signature per SignatureDef of the file, same
input/output names) and verify it against the original run in the TFLite interpreter, output by output, each
by one stated rule printed with its threshold and the measured value (subgraph outputs a SignatureDef does not
name are exposed and verified too). Quantized models are rebuilt 'faithfully': each quantized tensor is
rounded onto its recorded integer grid, and integer model I/O is kept. Random verification inputs: integer
inputs that index, count or shape get values valid for the op that reads them (derived from the graph); when
the interpreter still rejects them, the run is repeated with those inputs at their lowest value and the
verification is reported WEAK (exit 0, 'WEAK' in the table, "verified": "weak" in --report; never a match;
pass --inputs for a real check). Stateful models (variable tensors, resource variables) are verified on 3
consecutive calls per signature, state carried, each call's outputs checked."""


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..conversion.pipeline import convert
    from ..conversion.rules import format_checks

    result = convert(args.model, args.output, force=args.force, float_io=args.float_io,
                     fake_quant=not args.no_fake_quant, inputs=args.inputs, tolerance=args.tolerance,
                     verify=not args.no_verify, report=args.report, progress=print_progress,
                     input_shapes=args.input_shape)
    if result.verified:
        print(format_checks(result.checks))
    if result.weak:
        print(f"WEAK verification (not a verified match): {result.weak}")
    state = "" if result.verified and not result.weak else "; verification WEAK" if result.verified else \
        "; NOT verified (--no-verify)"
    ref = result.reference
    if result.verified and ref.get("reference"):
        print(f"reference: {ref['reference']}" + (f", {ref['kernels']}" if ref.get("kernels") else "")
              + (f" (not the stock interpreter: {ref['reference_why']})" if ref.get("reference_why") else ""))
    print(f"SavedModel written to {result.output_dir} (signatures: {', '.join(result.signatures)}; "
          f"{result.seconds:.1f} s){state}")
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "convert", "rebuild a .tflite as a verified, trainable TensorFlow SavedModel",
        DESCRIPTION, _cmd_convert, ("model", "path to a .tflite file"),
        ("OUT_DIR", "SavedModel directory to write", "write the verification numbers as JSON",
         "replace OUT_DIR if it exists"))
    p.add_argument("--float-io", action="store_true",
                   help="float32 inputs/outputs even where the model has integer (quantized) I/O")
    p.add_argument("--no-fake-quant", action="store_true",
                   help="clean float graph: do not round quantized tensors onto their integer grid")
    p.add_argument("--inputs", metavar="X.npz",
                   help="verification inputs: .npz keyed by input name, or .npy for a single input "
                   "(default: seeded random inputs). Integer inputs take integral values within their dtype's "
                   "range (else a usage error naming the input and value); with --float-io, quantized inputs take "
                   "real values, quantized with the input's scale/zero point (rounded onto the grid; a value "
                   "outside the representable range is an error, never clipped)")
    add_input_shape_flag(p, "verification")
    p.add_argument("--tolerance", type=float, default=None, metavar="T",
                   help="float outputs pass when max abs error <= max(T x max|reference|, the reference's spread: "
                   "the interpreter's default vs built-in kernels) (default T 1e-4; without T, float outputs that "
                   "dequantize a quantized tensor are judged in LSBs of its scale; quantized integer outputs are "
                   "always judged in LSBs, other integer, bool and string outputs exactly)")
    p.add_argument("--no-verify", action="store_true", help="skip verification against the interpreter")
