"""The project's error types.

Every failure the tool reports on purpose is a :class:`InverterError`. Each kind carries the
process exit code the CLI uses for it, so scripts can tell "bad file" from "unsupported op" from
"verification failed" without parsing text.
"""

from __future__ import annotations


class InverterError(Exception):
    """Base class of every error tflite-inverter raises on purpose."""

    exit_code = 1


class ModelFileError(InverterError):
    """The path cannot be read as a file: missing, a directory, unreadable, empty."""

    exit_code = 3


class InvalidModelError(InverterError):
    """The bytes are not a valid TFLite flatbuffer (truncated, corrupted or hostile).

    The message names the place: which table/field, which subgraph/operator/tensor.
    """

    exit_code = 4


class UnsupportedOpError(InverterError):
    """One or more ops (or op options) cannot be rebuilt.

    ``problems`` lists every one found, each with its location, so a user sees all of them at once.
    """

    exit_code = 5

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} unsupported op(s) or option(s):"
        super().__init__("\n  ".join([head, *self.problems]))

    def __reduce__(self) -> tuple[type, tuple[list[str]]]:  # crosses the TensorFlow child's pipe intact
        return (type(self), (self.problems,))


class VerificationError(InverterError):
    """A written result fails its check: a rebuilt output over its rule's threshold (``convert``), or
    a bound of the ``quantize`` report (a float op left in an integer model, a uint8 result that
    does not run, a reused-ranges result beyond 1 LSB of the source, ...)."""

    exit_code = 6


class InterpreterError(InverterError):
    """The TFLite interpreter could not load or run the original model (it may even crash).

    ``reason``: the interpreter's own words (or the signal), when known.
    """

    exit_code = 7

    def __init__(self, message: str, reason: str | None = None):
        self.reason = reason
        super().__init__(message)


class NotVerifiedError(InverterError):
    """The result was written, but the verifier compared nothing (the model has no output the
    interpreter returns), so it is NOT verified: an empty comparison is not a pass."""

    exit_code = 11


class OutputExistsError(InverterError):
    """The output exists and --force was not given: nothing is overwritten silently."""

    exit_code = 8


class UsageError(InverterError):
    """A command-line or API argument is wrong (bad input file for --inputs, wrong shapes, ...)."""

    exit_code = 2


class NotImplementedYetError(UsageError):
    """A documented option whose implementation is not there yet (exit code 2, like a usage error)."""


class TensorFlowCrashError(InverterError):
    """TensorFlow died while running the model (a signal such as SIGSEGV/SIGABRT in the child process
    that does all TensorFlow work), or one of its op kernels failed on the rebuilt model (the message
    then names the signature and the TensorFlow node). The tool itself survives; the message names
    the model and the stage."""

    exit_code = 9


class ResourceLimitError(InverterError):
    """The child process that runs TensorFlow exceeded its memory cap or its time limit
    (``TFLITE_INVERTER_MEMORY_LIMIT``, ``TFLITE_INVERTER_TIMEOUT``)."""

    exit_code = 10
