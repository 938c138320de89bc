"""The model stage: a ``.tflite`` file read into the frozen IR.

``reader`` (bytes -> :class:`ir.Model`, all validation happens here), ``ir`` (the immutable model),
``flatbuf`` / ``flexbuffer`` / ``schema`` (the bundled ``schema.fbs`` parsed at run time, the
FlatBuffers and FlexBuffers decoders), ``input_shapes``
(``--input-shape`` values against the IR). Never imports TensorFlow.
"""
