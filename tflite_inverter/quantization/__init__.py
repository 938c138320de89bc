"""The quantize stage: a model (or SavedModel) -> full-integer int8 / true uint8 ``.tflite`` that
drops into the source's place.

``pipeline`` (:func:`pipeline.quantize`, what ``tflite-inverter quantize`` runs: the stages ``recipe``,
``source``, ``converter``, ``reuse``, ``evaluate``, ``result``), ``calibration``
(data loading), ``metrics`` (per-output SQNR, cosine, top-1, LSB), ``matching`` (result and source paired by data
flow), ``layers`` (per-layer SQNR against the float model),
``uint8_rewrite`` (the lossless int8 -> uint8 flatbuffer rewrite), ``interface`` (restoring the
source's I/O order, names, signatures and metadata), ``fbedit`` (flatbuffer edits through TensorFlow's object API), ``converter_fixups``.
"""
