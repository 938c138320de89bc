"""Measure the 256-entry ``sigmoid_table_uint16`` of TFLite's int16 LOGISTIC / TANH kernels.

    python benchmarks/probe_sigmoid_table.py            # measure and compare with the stored table
    python benchmarks/probe_sigmoid_table.py --write    # ... and write ops/int16_sigmoid_table.json

The builtin int16 LOGISTIC / TANH (``activations.cc`` -> ``reference_integer_ops::Logistic`` /
``Tanh`` with ``input_multiplier > 0``) interpolate a hard-coded table of ``sigmoid(i / 24)`` in 0.16
format. The table is not ``round(65536 * sigmoid(i / 24))``: 44 of its entries are one higher,
and some differ from the exact value by more than 1 (about 1.1), so no rounding of a formula gives
it (it looks fitted for linear interpolation). It is data, so it is measured here, not derived.

How: an int16 TANH whose input scale is ``float32(1 / 6144)`` gets ``input_multiplier = 16384`` and
``input_left_shift = 13`` in Prepare (``m = s * 4096 * 3`` doubled while ``<= 32767 / 2``), so the
kernel's index value is ``v = 2 q`` for input code ``q``. At ``q = 128 k`` the interpolation fraction
is 0 and TANH returns ``table[k] - 32768`` exactly (``(table[k] << 8) - (1 << 23) + (1 << 7)) >> 8``),
which gives entries 0..254. Entry 255 is only read as the upper end of the last interval: at
``q = 128 * 254 + 127`` (fraction 254 of 256) TANH returns ``table[254] - 32768 + floor((254 d + 128) / 256)``
with ``d = table[255] - table[254]``, exact for ``0 <= d < 64``.

The interpreter runs in this process (the model is built here, trusted). ``tests/test_ops_int16x8.py``
re-measures the table and checks LOGISTIC / TANH bit-exact on every code at several scales.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tflite_inverter._io import write_json_atomic  # noqa: E402
from tflite_inverter.ops.elementwise import SIGMOID_TABLE_FILE  # noqa: E402

PROBE_SCALE = float(np.float32(1.0 / 6144.0))


def tanh_model(s_in: float) -> bytes:
    """A one-op int16 TANH model over every int16 code (output scale 1/32768, zero points 0)."""
    from tests.tflite_builder import build_model

    q = [{"scale": [s], "zero_point": [0]} for s in (s_in, 1.0 / 32768.0)]
    return build_model(tensors=[("x", [65536], "INT16", None, q[0]), ("y", [65536], "INT16", None, q[1])],
                       ops=[("TANH", [0], [1], None, None)], inputs=[0], outputs=[1])


def measure() -> list[int]:
    """The 256 table entries, read off the interpreter's int16 TANH (see the module docstring)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tanh_model(PROBE_SCALE))
    it.allocate_tensors()
    codes = np.arange(-32768, 32768).astype(np.int16)
    it.set_tensor(it.get_input_details()[0]["index"], codes)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)[32768:]  # q >= 0
    table = [int(v) + 32768 for v in y[128 * np.arange(255)]]
    step = int(y[128 * 254 + 127]) + 32768 - table[254]  # floor((254 d + 128) / 256) == d for 0 <= d < 64
    table.append(table[254] + step)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write the measured table to ops/int16_sigmoid_table.json")
    args = ap.parse_args(argv)
    import ai_edge_litert

    table = measure()
    stored = json.loads(SIGMOID_TABLE_FILE.read_text())["table"] if SIGMOID_TABLE_FILE.exists() else None
    formula = np.minimum(np.floor(65536.0 / (1.0 + np.exp(-np.arange(256) / 24.0)) + 0.5), 65535)
    print(f"measured {len(table)} entries; {int(np.count_nonzero(np.array(table) != formula))} differ from "
          f"round(65536 sigmoid(i / 24)); stored table {'equal' if stored == table else 'DIFFERS'}")
    if args.write:
        doc = {"what": "sigmoid_table_uint16 of TFLite's int16 LOGISTIC / TANH kernels, measured",
               "source": "benchmarks/probe_sigmoid_table.py",
               "runtime": f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}", "table": table}
        write_json_atomic(str(SIGMOID_TABLE_FILE), doc)
        print(f"wrote {SIGMOID_TABLE_FILE}")
    return 0 if stored == table or args.write else 1


if __name__ == "__main__":
    sys.exit(main())
