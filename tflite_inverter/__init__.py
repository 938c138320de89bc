"""tflite-inverter: vendor .tflite files back to verified TensorFlow SavedModels.

Importing the package is cheap: TensorFlow is only imported by the parts that need it (rebuild,
verify, quantize), so ``inspect`` and the reader start fast.
"""

from ._version import __version__
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
from .model.reader import read_model


def convert(model_path: str, output_dir: str, **kwargs):  # noqa: ANN201 - ConvertResult, imported lazily
    """Rebuild ``model_path`` as a verified TF2 SavedModel in ``output_dir``.

    See :func:`tflite_inverter.conversion.pipeline.convert` for the options (``force``, ``float_io``,
    ``fake_quant``, ``inputs``, ``tolerance``, ``verify``, ``report``, ``progress``, ``input_shapes``). Returns a
    ``ConvertResult`` with one verification row per output.
    """
    from .conversion.pipeline import convert as _convert

    return _convert(model_path, output_dir, **kwargs)


def inspect(model_path: str, target: str | None = None) -> dict:
    """The op-coverage report of ``model_path`` as a dict (what ``tflite-inverter inspect`` prints)."""
    from .coverage.report import build_report

    return build_report(read_model(model_path), target=target)


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
    "convert",
    "inspect",
    "__version__",
]
