"""The stock ``TFLiteConverter`` set up for a recipe, fed the calibration data per signature."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import (
    InverterError,
    UnsupportedOpError,
)
from .calibration import InputSpec
from .source import _Sig, _tf_type


def converter_for(saved_dir: str, keys: Sequence[str], dtype: str, io_in: str, io_out: str, per_tensor: bool,
                  dataset: Callable[[], Iterator[dict[str, np.ndarray]]] | None) -> Any:
    """The ``TFLiteConverter`` configured for a recipe (also used by the benchmark as the baseline)."""
    from .._tf import tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=list(keys))
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif dtype in ("int8", "int16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = dataset
        if dtype == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = _tf_type(io_in)
        conv.inference_output_type = _tf_type(io_out)
    if per_tensor:
        conv._experimental_disable_per_channel = True
    return conv



def _run_converter(conv: Any, dtype: str) -> bytes:
    import warnings

    try:
        with warnings.catch_warnings():  # the calibrator uses the deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            blob = conv.convert()
    except InverterError:
        raise
    except Exception as exc:  # ConverterError and friends: keep the lines that say what failed
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [text.strip()[:500]]
        hint = (" (with --dtype int8 every op needs an int8 kernel; try --dtype int16x8 or dynamic)"
                if dtype == "int8" else "")
        raise UnsupportedOpError([f"TFLiteConverter failed for --dtype {dtype}{hint}:", *lines[:20]]) from None

    from .converter_fixups import padv2_to_pad

    return padv2_to_pad(blob)  # the rebuilt graph's PadV2 back to the source's PAD



def _dataset(inputs: Sequence[InputSpec], samples: list[list[np.ndarray]], progress_bar: bool
             ) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    def gen() -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        for sample in tqdm(samples, desc="calibrating", unit="sample", disable=not progress_bar, file=sys.stderr,
                           leave=False):
            yield {s.name: a for s, a in zip(inputs, sample)}

    return gen



def _signatures_dataset(feeds: Sequence[tuple[_Sig, list[list[np.ndarray]]]], progress_bar: bool
                        ) -> Callable[[], Iterator[Any]]:
    """The representative dataset of a model with several signatures: TensorFlow's calibrator takes
    ``(signature_key, {input: array})`` pairs and calibrates each signature on its own samples."""
    if len(feeds) == 1:
        return _dataset(feeds[0][0].inputs, feeds[0][1], progress_bar)

    def gen() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        from tqdm import tqdm

        total = sum(len(samples) for _, samples in feeds)
        with tqdm(total=total, desc="calibrating", unit="sample", disable=not progress_bar, file=sys.stderr,
                  leave=False) as bar:
            for sig, samples in feeds:
                for sample in samples:
                    bar.update(1)
                    yield sig.key, {s.name: a for s, a in zip(sig.inputs, sample)}

    return gen
