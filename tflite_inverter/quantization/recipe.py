"""The quantize recipe: the choices (dtype, I/O types, granularity, target), their checks, and what the
source asks for (the I/O it keeps, whether its own ranges are reused)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import (
    UsageError,
)
from ..model import ir

DTYPES = ("int8", "uint8", "int16x8", "float16", "dynamic", "float32")


DTYPES = ("int8", "uint8", "int16x8", "float16", "dynamic", "float32")
IO_TYPES = ("int8", "uint8", "int16", "float32")


IO_TYPES = ("int8", "uint8", "int16", "float32")
GRANULARITIES = ("per-channel", "per-tensor")


#: imx8mp: the VX delegate (NXP's Linux path) takes per-channel int8 with a uint8 camera input.
#: imx8mp-nnapi: Android's NNAPI path, where int8 models are reported to fall back to the CPU while
#: uint8 ones reach the NPU: true uint8 per-tensor.
TARGETS = ("imx8mp", "imx8mp-nnapi")


TARGETS = ("imx8mp", "imx8mp-nnapi")
CALIBRATED = ("int8", "int16x8", "uint8")


#: Random inputs used to evaluate float16/dynamic/float32 results when no data is given.
EVAL_RANDOM_SAMPLES = 8



def _io_reason(io: str | None, target: str | None, dtype: str) -> str:
    """What asked for I/O types other than the source's."""
    if io is not None:
        return f"--io {io}"
    if target is not None:
        return f"--target {target}"
    return f"--dtype {dtype} has no such I/O type"



# -- the command ----------------------------------------------------------------------------------
#: The I/O types each recipe can give (a drop-in result keeps the source's where it is one of them).
_IO_CHOICES = {"int8": ("int8", "uint8", "float32"), "uint8": ("uint8", "float32"), "int16x8": ("float32", "int16")}



def _source_io(source: str) -> tuple[str | None, str | None]:
    """The source's input and output types in --io terms (None: mixed, or nothing real-valued).

    A SavedModel source takes float inputs (integer I/O is refused when it is loaded): float32.
    Only real-valued tensors count (float, or quantized integers); int32 indices and the like are
    not touched by the converter's I/O type.
    """
    if os.path.isdir(source):
        return "float32", "float32"
    from ..model.reader import read_model

    model = read_model(source)
    sg = model.subgraphs[model.signatures[0].subgraph_index] if model.signatures else model.main

    def kind(indices: Sequence[int]) -> str | None:
        kinds = set()
        for i in indices:
            t = sg.tensors[i]
            if t.type_name == "FLOAT32":
                kinds.add("float32")
            elif t.is_quantized and t.type_name in ("INT8", "UINT8", "INT16"):
                kinds.add(t.type_name.lower())
        return kinds.pop() if len(kinds) == 1 else None

    return kind(sg.inputs), kind(sg.outputs)



def _resolve_io(dtype: str, io: str | None, target: str | None,
                source_io: tuple[str | None, str | None] = (None, None)) -> tuple[str, str]:
    """(input type, output type). Without --io/--target: the source's types where the recipe can
    give them (a drop-in replacement), else the recipe's default (int8/uint8 for int8/uint8, float32)."""
    if io is None and target is None:
        choices = _IO_CHOICES.get(dtype, ("float32",))
        default = {"int8": "int8", "uint8": "uint8"}.get(dtype, "float32")

        def pick(t: str | None) -> str:
            if dtype == "uint8" and t == "int8":
                return "uint8"  # the same values, shifted by 128
            return t if t in choices else default

        return pick(source_io[0]), pick(source_io[1])
    if dtype == "uint8":
        if io not in (None, "uint8", "float32"):
            raise UsageError(f"--io {io} with --dtype uint8: uint8 models take uint8 (default) or float32 I/O")
        if target == "imx8mp":
            return "uint8", io or "uint8"
        return io or "uint8", io or "uint8"
    if dtype == "int8":
        if target == "imx8mp":
            return "uint8", io or "uint8"  # camera path: uint8 pixels straight in
        return io or "int8", io or "int8"
    if dtype == "int16x8":
        if io not in (None, "float32", "int16"):
            raise UsageError(f"--io {io} with --dtype int16x8: int16x8 models take float32 or int16 I/O")
        return io or "float32", io or "float32"
    if io not in (None, "float32"):
        raise UsageError(f"--io {io} with --dtype {dtype}: only float32 I/O is possible (integer I/O needs a full-"
                         "integer model: --dtype int8)")
    return "float32", "float32"



def _recipe(dtype: str, io_in: str, io_out: str) -> tuple[str, str, str]:
    """The converter recipe: uint8 is made from int8 (uint8 I/O asked of the converter as int8, the
    rewrite shifts it)."""
    if dtype == "uint8":
        return "int8", "int8" if io_in == "uint8" else io_in, "int8" if io_out == "uint8" else io_out
    return dtype, io_in, io_out



def _check_args(dtype: str, io: str | None, granularity: str, target: str | None) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if io is not None and io not in IO_TYPES:
        raise UsageError(f"--io {io}: expected one of {', '.join(IO_TYPES)}")
    if dtype == "uint8" and granularity == "per-channel":
        raise UsageError("--dtype uint8 is per-tensor by definition (uint8 kernels take one scale per tensor); "
                         "drop --granularity per-channel")
    if granularity not in GRANULARITIES:
        raise UsageError(f"--granularity {granularity}: expected one of {', '.join(GRANULARITIES)}")
    if target is not None and target not in TARGETS:
        raise UsageError(f"--target {target}: expected one of {', '.join(TARGETS)}")
    if target == "imx8mp" and dtype not in ("int8", "uint8"):
        raise UsageError(f"--target imx8mp with --dtype {dtype}: the i.MX8M Plus NPU runs 8-bit integer models only; "
                         "use --dtype int8")
    if io == "int16" and dtype != "int16x8":
        raise UsageError("--io int16 goes with --dtype int16x8")
    if granularity == "per-tensor" and dtype not in ("int8", "int16x8", "uint8"):
        raise UsageError(f"--granularity per-tensor applies to full-integer models (int8, int16x8), not {dtype}")



def _quantized_source(source: str, calib: str | None, dtype: str | None) -> ir.Model | None:
    """The source model when it will be requantized with its own ranges: an already-quantized
    .tflite, no calibration data, an 8-bit recipe."""
    if calib is not None or dtype not in (None, "int8", "uint8") or not os.path.isfile(source):
        return None
    from ..conversion.plan import is_quantized_model
    from ..model.reader import read_model

    model = read_model(source)
    return model if is_quantized_model(model) else None
