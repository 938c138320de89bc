"""Rewrites of TFLiteConverter output that undo forms the rebuilt graph takes for TensorFlow's sake.

PADV2 -> PAD. The rebuilt graph pads with ``PadV2`` (see :func:`.ops.common.constant_pad`: oneDNN's
layout pass mis-fuses ``Pad`` into convolutions), which the converter writes as PADV2. TFLite's PAD
kernel pads with the output's zero point (real 0); PADV2 with its third input. A PADV2 whose pad
value is real 0 (0.0 for float; the output's zero point for quantized tensors) therefore computes
exactly what PAD computes, and PAD is what the source had and what NPU delegates accept (the
i.MX8M Plus VX delegate registers PAD but not PADV2). The op version is kept: TFLite versions PAD
and PADV2 alike (1 float/uint8, 2 int8, 3 rank 5, 4 int16).

The flatbuffer is edited through TensorFlow's own object API, like :mod:`.uint8_rewrite`.
"""

from __future__ import annotations

import numpy as np


def padv2_to_pad(blob: bytes) -> bytes:
    """``blob`` with every PADV2 whose constant pad value is real zero turned into PAD (unchanged
    bytes when there is none)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(blob))
    padv2 = {i for i, c in enumerate(model.operatorCodes)
             if max(c.builtinCode, c.deprecatedBuiltinCode) == fb.BuiltinOperator.PADV2}
    if not padv2:
        return blob
    pad_codes: dict[int, int] = {}  # version -> opcode index of PAD

    def pad_code(version: int) -> int:
        if version not in pad_codes:
            for i, c in enumerate(model.operatorCodes):
                if max(c.builtinCode, c.deprecatedBuiltinCode) == fb.BuiltinOperator.PAD and c.version == version:
                    pad_codes[version] = i
                    break
            else:
                code = fb.OperatorCodeT()
                code.builtinCode = fb.BuiltinOperator.PAD
                code.deprecatedBuiltinCode = fb.BuiltinOperator.PAD
                code.version = version
                model.operatorCodes.append(code)
                pad_codes[version] = len(model.operatorCodes) - 1
        return pad_codes[version]

    changed = False
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex not in padv2 or op.inputs is None or len(op.inputs) < 3:
                continue
            if not _is_real_zero(model, sg, int(op.inputs[2]), int(op.outputs[0])):
                continue
            op.opcodeIndex = pad_code(model.operatorCodes[op.opcodeIndex].version)
            op.inputs = np.asarray(list(op.inputs)[:2], dtype=np.int32)
            op.builtinOptionsType = fb.BuiltinOptions.PadOptions
            op.builtinOptions = fb.PadOptionsT()
            changed = True
    return bytes(fu.convert_object_to_bytearray(model)) if changed else blob


def _is_real_zero(model: object, sg: object, value_index: int, out_index: int) -> bool:
    if value_index < 0:
        return True
    t = sg.tensors[value_index]
    buf = model.buffers[t.buffer] if t.buffer else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return False  # a pad value computed at run time
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
    if t.type not in dtypes:
        return False
    values = np.frombuffer(bytes(bytearray(buf.data)), dtype=dtypes[t.type])
    if values.size != 1:
        return False
    out = sg.tensors[out_index]
    q = out.quantization
    if values.dtype.kind == "f":
        return float(values[0]) == 0.0
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    return int(values[0]) == zp
