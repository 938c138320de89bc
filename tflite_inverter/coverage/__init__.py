"""The inspect stage: what a model uses and what survives.

``report`` (the op-coverage report, what ``tflite-inverter inspect`` prints), ``quantkind`` (how each
op is quantized), ``targets`` (per-target placement, e.g. the NXP i.MX8M Plus NPU, and the measured
kernel tables as JSON).
"""
