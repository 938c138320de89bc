"""tflite-inverter: vendor .tflite files back to verified TensorFlow SavedModels.

Importing the package is cheap: TensorFlow is only imported by the parts that need it (rebuild,
verify, quantize), so ``inspect`` and the reader start fast.
"""

from .errors import (
    InterpreterError,
    InvalidModelError,
    InverterError,
    ModelFileError,
    OutputExistsError,
    UnsupportedOpError,
    UsageError,
    VerificationError,
)
from .reader import read_model

__version__ = "0.1.0"

__all__ = [
    "InterpreterError",
    "InvalidModelError",
    "InverterError",
    "ModelFileError",
    "OutputExistsError",
    "UnsupportedOpError",
    "UsageError",
    "VerificationError",
    "read_model",
    "__version__",
]
