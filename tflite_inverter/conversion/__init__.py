"""The convert stage: IR -> verified SavedModel.

``pipeline`` (:func:`pipeline.convert`, what ``tflite-inverter convert`` runs), ``verify`` (the
rules, the comparison and the interpreter runs), ``verify_inputs`` (meaningful integer inputs from
the graph), ``_interp_child`` / ``_micro_child`` (the child processes that run the original in the
stock interpreter and in TFLite Micro).
"""
