"""Loading the source for quantization: a .tflite rebuilt as a clean float SavedModel (or a SavedModel
used as is), its signatures and inputs, the calibration data per signature, and the checks that
refuse what the converter would crash on."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import _io
from ..errors import (
    UnsupportedOpError,
    UsageError,
)
from ..model import ir
from ..model.input_shapes import (
    InputRef,
    InputShapesArg,
    dynamic_dims_error,
    parse_input_shapes,
    resolve_input_shapes,
)
from .calibration import CalibrationData, InputSpec, check_mean_std_applies, load_calibration


# -- the source -----------------------------------------------------------------------------------
@dataclass
class _Sig:
    """One signature of the source as a float function."""

    key: str
    inputs: list[InputSpec]
    outputs: list[str]
    reference: Callable[..., Any]  # the float function: kwargs by input name
    plan: Any = None  # rebuild.SignaturePlan (a .tflite source)



@dataclass
class _Source:
    kind: str  # "tflite" or "saved_model"
    path: str
    saved_dir: str
    keys: list[str]
    inputs: list[InputSpec]  # of the first signature
    outputs: list[str]
    reference: Callable[..., Any]  # the first signature's float function: kwargs by input name
    size: int
    quantized: bool
    model: ir.Model | None = None
    tmp: str | None = None
    plan: Any = None  # rebuild.SignaturePlan of the first signature (a .tflite source)
    sigs: list[_Sig] = field(default_factory=list)  # every signature, in ``keys`` order



#: Recurrent ops rebuilt as tf.while_loops over state variables. TensorFlow's calibrator
#: (TFLiteConverter with a representative dataset) segfaults on such graphs (measured on 4 corpus LSTM
#: models, inside calibrator.py _feed_tensors), which would take the whole process down.
_CALIBRATOR_CRASHES = ("LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
                       "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN")



def _refuse_calibrator_crashes(model: ir.Model, dtype: str) -> None:
    found = [f"{sg.where(op)}" for sg in model.subgraphs for op in sg.operators if op.name in _CALIBRATOR_CRASHES]
    if found:
        raise UnsupportedOpError([f"{w}: calibrated --dtype {dtype} is refused for recurrent ops: TensorFlow's "
                                  "calibrator crashes (segfault) on their rebuilt state loops; use --dtype float16 or "
                                  "dynamic, or requantize an already-quantized source without --calib" for w in found])



def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)



def _with_input_shapes(sigs: list[_Sig], input_shapes: InputShapesArg) -> list[_Sig]:
    """``sigs`` with each input's dynamic dims set where ``input_shapes`` (``--input-shape``) gives
    them: calibration, the converter's samples and evaluation then use that shape (the converted
    model keeps the dims dynamic)."""
    shapes = parse_input_shapes(input_shapes)
    if not shapes:
        return sigs
    refs = [InputRef(sig.key, (s.name, *s.aliases), s.shape)
            for sig in sigs for s in sig.inputs]
    resolved = iter(resolve_input_shapes(shapes, refs))
    for sig in sigs:
        sig.inputs = [s if (g := next(resolved)) is None else replace(s, shape=g) for s in sig.inputs]
    return sigs



def _check_default_shapes(src: _Source, *samples_by_sig: dict[str, list[list[np.ndarray]]]) -> None:
    """Run the float model once on a sample whose dynamic dims were fed as 1 (``--calib random``,
    the random evaluation inputs; no ``--input-shape``): a model that rejects that shape is a
    :class:`UsageError` naming the inputs and the flag, not a converter failure later on."""
    for sig in src.sigs:
        sample = next((s[sig.key][0] for s in samples_by_sig if s.get(sig.key)), None)
        if sample is None:
            continue
        shaped = [None not in spec.shape or any(d is None and g != 1 for d, g in zip(spec.shape, a.shape))
                  for spec, a in zip(sig.inputs, sample)]  # False: dynamic dims fed as 1
        if all(shaped):
            continue
        from .._tf import error_cause, tf

        try:
            sig.reference(**{s.name: tf.constant(a) for s, a in zip(sig.inputs, sample)})
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises several kinds for a rejected shape
            refs = [InputRef(sig.key, (s.name, *s.aliases), s.shape) for s in sig.inputs]
            given = [tuple(a.shape) if ok else None for a, ok in zip(sample, shaped)]
            err = dynamic_dims_error(refs, given, error_cause(exc), "the float model rejects",
                                     " (or give --calib samples of that shape)")
            if err is not None:
                raise err from None



def _load_source(path: str, progress: Callable[[str], None] | None, range_ops: bool = False,
                 input_shapes: InputShapesArg = None) -> _Source:
    """The source as a float SavedModel. ``range_ops``: a quantized .tflite keeps its recorded
    activation ranges as fake-quant ops (requantizing with the source's own ranges).
    ``input_shapes``: see :func:`_with_input_shapes`."""
    from .._tf import tf

    parse_input_shapes(input_shapes)  # format errors before any TensorFlow work

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UsageError(f"{path}: a folder but not a SavedModel (no saved_model.pb); SOURCE is a .tflite or a "
                             "SavedModel written by `tflite-inverter convert`")
        loaded = tf.saved_model.load(path)
        keys = list(loaded.signatures.keys())
        if not keys:
            raise UsageError(f"{path}: the SavedModel has no signatures")
        sigs = []
        for key in keys:
            fn = loaded.signatures[key]
            inputs = []
            for name, spec in fn.structured_input_signature[1].items():
                dt = np.dtype(spec.dtype.as_numpy_dtype)
                if dt in (np.int8, np.uint8, np.int16):
                    raise UsageError(f"{path}: input {name!r} is {dt}: the SavedModel keeps the quantized source's "
                                     "integer I/O; write it with `convert --float-io --no-fake-quant` (or pass the "
                                     ".tflite)")
                inputs.append(InputSpec(name, tuple(spec.shape.as_list()), dt))
            sigs.append(_Sig(key, inputs, list(fn.structured_outputs.keys()), fn))
        first = _with_input_shapes(sigs, input_shapes)[0]
        src = _Source("saved_model", path, path, keys, first.inputs, first.outputs, first.reference, _dir_size(path),
                      False, sigs=sigs)
        src._keep = loaded  # type: ignore[attr-defined]  # the function needs its variables alive
        return src

    from ..conversion.plan import is_quantized_model
    from ..model.reader import read_model
    from ..rebuild import RebuildOptions, make_module

    model = read_model(path)
    _io.log(progress, f"rebuilding {os.path.basename(path)} as a float graph"
         + (" carrying its recorded ranges" if range_ops else ""))
    options = RebuildOptions(range_ops=True, float_io=True) if range_ops else RebuildOptions(fake_quant=False,
                                                                                             float_io=True)
    module = make_module(model, options)
    sigs = [_Sig(plan.key, _plan_inputs(plan), [s.name for s in plan.outputs], module.concrete[plan.key], plan)
            for plan in module.plans]
    first = _with_input_shapes(sigs, input_shapes)[0]
    tmp = tempfile.mkdtemp(prefix="tflite-inverter-quantize-")
    try:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    src = _Source("tflite", path, tmp, [p.key for p in module.plans], first.inputs, first.outputs, first.reference,
                  os.path.getsize(path), is_quantized_model(model), model, tmp, first.plan, sigs)
    src._keep = module  # type: ignore[attr-defined]
    return src



def _load_signature_calibration(calib: str, src: _Source, mean: list[float] | None, std: list[float] | None,
                                samples: int | None, seed: int) -> dict[str, CalibrationData]:
    """Calibration data for every signature, by signature key (see :mod:`.calibration` for how an
    ``.npz`` keys the inputs of several signatures)."""
    if len(src.sigs) == 1:
        return {src.keys[0]: load_calibration(calib, src.inputs, mean=mean, std=std, samples=samples, seed=seed)}
    check_mean_std_applies(mean, [sig.inputs for sig in src.sigs])  # per signature only float inputs take them
    out = {}
    for k, sig in enumerate(src.sigs):
        others = {o.key: [s.name for s in o.inputs] for o in src.sigs if o.key != sig.key}
        out[sig.key] = load_calibration(calib, sig.inputs, mean=mean, std=std, samples=samples, seed=seed + k,
                                        scope=sig.key, other_scopes=others)
    return out



def _plan_inputs(plan: Any) -> list[InputSpec]:
    """Calibration's view of a rebuilt signature's inputs (with the .tflite names as .npz aliases)."""
    inputs = []
    for k, s in enumerate(plan.inputs):
        q = s.tensor.quantization
        quant = None
        if s.tensor.is_quantized and q.scale.size == 1 and s.tensor.type_name in ("INT8", "UINT8", "INT16"):
            quant = (float(q.scale[0]), int(q.zero_point[0]) if q.zero_point.size else 0, s.tensor.type_name)
        aliases = tuple(a for a in ((plan.tflite_input_names[k] if k < len(plan.tflite_input_names) else ""),
                                    s.tensor.name) if a and a != s.name)
        inputs.append(InputSpec(s.name, tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype), aliases, quant))
    return inputs



# -- conversion -----------------------------------------------------------------------------------
def _tf_type(name: str) -> Any:
    from .._tf import tf

    return {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[name]
