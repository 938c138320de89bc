"""``quantize``: a .tflite (rebuilt on the fly) or a SavedModel -> a re-quantized .tflite + accuracy report.

The source is turned into a clean float SavedModel (a .tflite is rebuilt with ``fake_quant=False,
float_io=True``; a SavedModel written by ``convert --float-io --no-fake-quant`` is used as is) and
handed to the stock ``TFLiteConverter`` with the requested recipe:

* ``int8``: full integer (``TFLITE_BUILTINS_INT8`` only, so conversion fails rather than leave a
  float kernel), per-channel weights by default, I/O type per ``io``;
* ``int16x8``: int16 activations, int8 weights; ``float16``: float16 weights; ``dynamic``:
  dynamic-range int8 weights; ``float32``: plain float;
* ``uint8``: every tensor asymmetric uint8, per tensor: the per-tensor int8 model rewritten
  losslessly (:mod:`.uint8_rewrite`).

Calibration data comes from :mod:`.calibration`; the last 20 % of the samples are held back and the
quantized model (run in the TFLite interpreter, child process) is compared with the float model on
them (:mod:`.accuracy`). The output is written atomically and never replaces a file without
``force``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ir
from .accuracy import float_ops, format_metrics, json_safe, output_metrics
from .calibration import CalibrationData, InputSpec, load_calibration, parse_floats
from .errors import InverterError, OutputExistsError, UnsupportedOpError, UsageError

DTYPES = ("int8", "uint8", "int16x8", "float16", "dynamic", "float32")
IO_TYPES = ("int8", "uint8", "int16", "float32")
GRANULARITIES = ("per-channel", "per-tensor")
#: imx8mp: the VX delegate (NXP's Linux path) takes per-channel int8 with a uint8 camera input.
#: imx8mp-nnapi: Android's NNAPI path, where int8 models are reported to fall back to the CPU while
#: uint8 ones reach the NPU: true uint8 per-tensor.
TARGETS = ("imx8mp", "imx8mp-nnapi")
CALIBRATED = ("int8", "int16x8", "uint8")
#: Random inputs used to evaluate float16/dynamic/float32 results when no data is given.
EVAL_RANDOM_SAMPLES = 8


class NotImplementedYetError(UsageError):
    """A documented option whose implementation is not there yet (exit code 2, like a usage error)."""


@dataclass
class QuantizeResult:
    source: str
    output: str
    dtype: str
    io: dict[str, str]
    granularity: str
    target: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    size_before: int = 0
    size_after: int = 0
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    evaluated_on: str = ""
    per_channel: list[dict[str, Any]] | None = None  # per-tensor mode: the same metrics, per-channel model
    float_ops: list[str] = field(default_factory=list)
    target_report: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fully_integer(self) -> bool:
        return not self.float_ops

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source, "output": self.output, "dtype": self.dtype, "io": self.io,
            "granularity": self.granularity, "target": self.target, "calibration": self.calibration,
            "warnings": self.warnings,
            "size_bytes": {"before": self.size_before, "after": self.size_after,
                           "ratio": round(self.size_after / self.size_before, 4) if self.size_before else None},
            "accuracy": {"evaluated_on": self.evaluated_on, "outputs": self.accuracy},
            "float_ops": self.float_ops, "fully_integer": self.fully_integer,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
        if self.per_channel is not None:
            by_name = {m["output"]: m for m in self.per_channel}
            out["per_tensor_vs_per_channel"] = [
                {"output": m["output"], "sqnr_db_per_tensor": m.get("sqnr_db"),
                 "sqnr_db_per_channel": by_name.get(m["output"], {}).get("sqnr_db"),
                 "sqnr_db_difference": _diff(m.get("sqnr_db"), by_name.get(m["output"], {}).get("sqnr_db")),
                 "top1_per_tensor": m.get("top1_agreement"),
                 "top1_per_channel": by_name.get(m["output"], {}).get("top1_agreement")}
                for m in self.accuracy]
        if self.target is not None:
            out["target_report"] = self.target_report
        return json_safe(out)

    def format_text(self) -> str:
        lines = []
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        lines.append(f"accuracy vs the float model ({self.evaluated_on}):")
        compare = {m["output"]: m for m in self.per_channel} if self.per_channel is not None else None
        lines.append(format_metrics(self.accuracy, compare))
        ratio = f" ({100 * self.size_after / self.size_before:.1f}%)" if self.size_before else ""
        lines.append(f"size: {self.size_before} -> {self.size_after} bytes{ratio}")
        if self.dtype in ("int8", "uint8"):
            if self.float_ops:
                lines.append(f"NOT fully integer: {len(self.float_ops)} op(s) compute in float:")
                lines.extend(f"  {f}" for f in self.float_ops)
            else:
                lines.append("fully integer: no float op except QUANTIZE/DEQUANTIZE at declared float I/O")
        if self.target_report is not None:
            lines.append(_target_summary(self.target_report))
        return "\n".join(lines)


def _diff(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) - float(b)
    return None


def _target_summary(rep: dict[str, Any]) -> str:
    if "unavailable" in rep:
        return f"target: {rep['unavailable']}"
    sm = rep.get("summary") or {}
    if "operators" not in sm:
        return f"target {rep.get('name', '?')}: placement report in the --report JSON"
    cpu = sm.get("cpu_ops_by_type") or {}
    tail = f"; on CPU: {', '.join(f'{k} x{v}' for k, v in cpu.items())}" if cpu else ""
    return (f"target {rep.get('name', '?')} (predicted): {sm.get('npu')}/{sm.get('operators')} ops on the NPU, "
            f"{sm.get('partitions')} partition(s){tail}")


def _log(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


# -- the source -----------------------------------------------------------------------------------
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


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _load_source(path: str, progress: Callable[[str], None] | None) -> _Source:
    from ._tf import tf

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UsageError(f"{path}: a folder but not a SavedModel (no saved_model.pb); SOURCE is a .tflite or a "
                             "SavedModel written by `tflite-inverter convert`")
        loaded = tf.saved_model.load(path)
        keys = list(loaded.signatures.keys())
        if not keys:
            raise UsageError(f"{path}: the SavedModel has no signatures")
        fn = loaded.signatures[keys[0]]
        specs = fn.structured_input_signature[1]
        inputs = []
        for name, spec in specs.items():
            dt = np.dtype(spec.dtype.as_numpy_dtype)
            if dt in (np.int8, np.uint8, np.int16):
                raise UsageError(f"{path}: input {name!r} is {dt}: the SavedModel keeps the quantized source's integer "
                                 "I/O; write it with `convert --float-io --no-fake-quant` (or pass the .tflite)")
            inputs.append(InputSpec(name, tuple(spec.shape.as_list()), dt))
        outputs = list(fn.structured_outputs.keys())
        src = _Source("saved_model", path, path, keys, inputs, outputs, fn, _dir_size(path), False)
        src._keep = loaded  # type: ignore[attr-defined]  # the function needs its variables alive
        return src

    from .reader import read_model
    from .rebuild import RebuildOptions, make_module
    from .verify import is_quantized_model

    model = read_model(path)
    _log(progress, f"rebuilding {os.path.basename(path)} as a float graph")
    module = make_module(model, RebuildOptions(fake_quant=False, float_io=True))
    plan = module.plans[0]
    inputs = []
    for k, s in enumerate(plan.inputs):
        q = s.tensor.quantization
        quant = None
        if s.tensor.is_quantized and q.scale.size == 1 and s.tensor.type_name in ("INT8", "UINT8", "INT16"):
            quant = (float(q.scale[0]), int(q.zero_point[0]) if q.zero_point.size else 0, s.tensor.type_name)
        aliases = tuple(a for a in ((plan.tflite_input_names[k] if k < len(plan.tflite_input_names) else ""),
                                    s.tensor.name) if a and a != s.name)
        inputs.append(InputSpec(s.name, tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype), aliases, quant))
    tmp = tempfile.mkdtemp(prefix="tflite-inverter-quantize-")
    try:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    src = _Source("tflite", path, tmp, [p.key for p in module.plans], inputs, [s.name for s in plan.outputs],
                  module.concrete[plan.key], os.path.getsize(path), is_quantized_model(model), model, tmp)
    src._keep = module  # type: ignore[attr-defined]
    return src


# -- conversion -----------------------------------------------------------------------------------
def _tf_type(name: str) -> Any:
    from ._tf import tf

    return {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[name]


def converter_for(saved_dir: str, keys: Sequence[str], dtype: str, io_in: str, io_out: str, per_tensor: bool,
                  dataset: Callable[[], Iterator[dict[str, np.ndarray]]] | None) -> Any:
    """The ``TFLiteConverter`` configured for a recipe (also used by the benchmark as the baseline)."""
    from ._tf import tf

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
            return conv.convert()
    except InverterError:
        raise
    except Exception as exc:  # ConverterError and friends: keep the lines that say what failed
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [text.strip()[:500]]
        hint = (" (with --dtype int8 every op needs an int8 kernel; try --dtype int16x8 or dynamic)"
                if dtype == "int8" else "")
        raise UnsupportedOpError([f"TFLiteConverter failed for --dtype {dtype}{hint}:", *lines[:20]]) from None


def _dataset(inputs: Sequence[InputSpec], samples: list[list[np.ndarray]], progress_bar: bool
             ) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    def gen() -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        for sample in tqdm(samples, desc="calibrating", unit="sample", disable=not progress_bar, file=sys.stderr,
                           leave=False):
            yield {s.name: a for s, a in zip(inputs, sample)}

    return gen


# -- evaluation -----------------------------------------------------------------------------------
def _quantize_array(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    if t.type_name in ("FLOAT32", "FLOAT16") or not t.is_quantized:
        return np.asarray(a, dtype=t.dtype)
    q = t.quantization
    info = np.iinfo(t.dtype)
    v = np.round(np.asarray(a, dtype=np.float64) / float(q.scale[0])) + int(q.zero_point[0])
    return np.clip(v, info.min, info.max).astype(t.dtype)


def _dequantize_array(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    if not t.is_quantized or a.dtype.kind == "f":
        return np.asarray(a, dtype=np.float32)
    q = t.quantization
    return (float(q.scale[0]) * (a.astype(np.float64) - int(q.zero_point[0]))).astype(np.float32)


def _reference(src: _Source, samples: list[list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    from ._tf import tf

    ref: dict[str, list[np.ndarray]] = {n: [] for n in src.outputs}
    for sample in samples:
        res = src.reference(**{s.name: tf.constant(a) for s, a in zip(src.inputs, sample)})
        for n in src.outputs:
            ref[n].append(res[n].numpy())
    return ref


def _run_quantized(path: str, src: _Source, samples: list[list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Run the written model in the interpreter (child process) with real-valued ``samples``."""
    from .reader import read_model
    from .verify import run_tflite

    model = read_model(path)
    sig = next((s for s in model.signatures if s.key == src.keys[0]), None)
    if sig is not None:
        sg = model.subgraphs[sig.subgraph_index]
        in_t = {n: sg.tensors[i] for n, i in sig.inputs}
        out_t = {n: sg.tensors[i] for n, i in sig.outputs}
        missing = [s.name for s in src.inputs if s.name not in in_t] + [n for n in src.outputs if n not in out_t]
        if missing:
            raise UsageError(f"the quantized model's signature lacks {', '.join(missing)}; cannot evaluate it")
        in_names = [s.name for s in src.inputs]
        out_names = list(src.outputs)
        tin = [in_t[n] for n in in_names]
        tout = [out_t[n] for n in out_names]
        key: str | None = sig.key
    else:  # no SignatureDef: positional
        sg = model.main
        tin = [sg.tensors[i] for i in sg.inputs]
        tout = [sg.tensors[i] for i in sg.outputs]
        in_names, out_names, key = [], [], None
    runs = [(key, in_names, out_names, [_quantize_array(a, t) for a, t in zip(sample, tin)]) for sample in samples]
    res = run_tflite(path, runs)
    got: dict[str, list[np.ndarray]] = {n: [] for n in src.outputs}
    for outs in res:
        for n, t, o in zip(src.outputs, tout, outs):
            got[n].append(_dequantize_array(o, t))
    return got


def _metrics(src: _Source, ref: dict[str, list[np.ndarray]], got: dict[str, list[np.ndarray]]
             ) -> list[dict[str, Any]]:
    return [output_metrics(n, ref[n], got[n]) for n in src.outputs]


def _target_report(data: bytes, target: str) -> dict[str, Any]:
    from .reader import read_model
    from .report import build_report


    try:
        rules = "imx8mp" if target.startswith("imx8mp") else target  # NNAPI: VX rules are the nearest data we have
        return build_report(read_model(data), target=rules).get("target") or {
            "unavailable": f"inspect gave no --target {target} section"}
    except InverterError as exc:
        return {"unavailable": f"inspect --target {target} failed: {exc}"}


# -- the command ----------------------------------------------------------------------------------
def _resolve_io(dtype: str, io: str | None, target: str | None) -> tuple[str, str]:
    if dtype == "uint8":
        if io not in (None, "uint8", "float32"):
            raise UsageError(f"--io {io} with --dtype uint8: uint8 models take uint8 (default) or float32 I/O")
        if target == "imx8mp":
            return "uint8", io or "uint8"
        return io or "uint8", io or "uint8"
    if dtype == "int8":
        if target == "imx8mp":
            return "uint8", io or "uint8"  # camera path: uint8 pixels straight in
        return io or "int8", io or "int8"
    if dtype == "int16x8":
        if io not in (None, "float32", "int16"):
            raise UsageError(f"--io {io} with --dtype int16x8: int16x8 models take float32 or int16 I/O")
        return io or "float32", io or "float32"
    if io not in (None, "float32"):
        raise UsageError(f"--io {io} with --dtype {dtype}: only float32 I/O is possible (integer I/O needs a full-"
                         "integer model: --dtype int8)")
    return "float32", "float32"


def _recipe(dtype: str, io_in: str, io_out: str) -> tuple[str, str, str]:
    """The converter recipe: uint8 is made from int8 (uint8 I/O asked of the converter as int8, the
    rewrite shifts it)."""
    if dtype == "uint8":
        return "int8", "int8" if io_in == "uint8" else io_in, "int8" if io_out == "uint8" else io_out
    return dtype, io_in, io_out


def _check_args(dtype: str, io: str | None, granularity: str, target: str | None) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if io is not None and io not in IO_TYPES:
        raise UsageError(f"--io {io}: expected one of {', '.join(IO_TYPES)}")
    if dtype == "uint8" and granularity == "per-channel":
        raise UsageError("--dtype uint8 is per-tensor by definition (uint8 kernels take one scale per tensor); "
                         "drop --granularity per-channel")
    if granularity not in GRANULARITIES:
        raise UsageError(f"--granularity {granularity}: expected one of {', '.join(GRANULARITIES)}")
    if target is not None and target not in TARGETS:
        raise UsageError(f"--target {target}: expected one of {', '.join(TARGETS)}")
    if target == "imx8mp" and dtype not in ("int8", "uint8"):
        raise UsageError(f"--target imx8mp with --dtype {dtype}: the i.MX8M Plus NPU runs 8-bit integer models only; "
                         "use --dtype int8")
    if io == "int16" and dtype != "int16x8":
        raise UsageError("--io int16 goes with --dtype int16x8")
    if granularity == "per-tensor" and dtype not in ("int8", "int16x8", "uint8"):
        raise UsageError(f"--granularity per-tensor applies to full-integer models (int8, int16x8), not {dtype}")


def quantize(source: str, output: str, *, calib: str | None = None, dtype: str = "int8", io: str | None = None,
             granularity: str | None = None, target: str | None = None,
             mean: str | Sequence[float] | float | None = None, std: str | Sequence[float] | float | None = None,
             samples: int | None = None, report: str | None = None, force: bool = False, evaluate: bool = True,
             seed: int = 0, progress: Callable[[str], None] | None = None, progress_bar: bool = False
             ) -> QuantizeResult:
    """Re-quantize ``source`` (.tflite or SavedModel) into ``output`` (.tflite) and measure the result.

    ``calib``: ``.npy`` (one input), ``.npz`` (keyed by input name), a folder of images, or
    ``"random"`` (smoke tests only: warned about loudly). Raises :class:`UsageError` for bad
    arguments or calibration data (nothing is written), :class:`OutputExistsError` when ``output``
    or ``report`` exists without ``force``, :class:`NotImplementedYetError` for ``dtype="uint8"``
    and for requantizing a quantized source without data, :class:`UnsupportedOpError` when the
    source cannot be rebuilt or the converter cannot produce the recipe.
    """
    start = time.time()
    if target == "imx8mp-nnapi":
        if dtype not in ("int8", "uint8"):
            raise UsageError(f"--target imx8mp-nnapi with --dtype {dtype}: NNAPI on the i.MX8M Plus reaches the NPU "
                             "with uint8 models only")
        if granularity == "per-channel":
            raise UsageError("--target imx8mp-nnapi is true uint8, per-tensor by definition; drop --granularity")
        dtype, granularity = "uint8", "per-tensor"
    if granularity is None:
        granularity = "per-tensor" if dtype == "uint8" else "per-channel"
    _check_args(dtype, io, granularity, target)
    io_in, io_out = _resolve_io(dtype, io, target)
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    for path in (output, report):
        if path and os.path.exists(path) and not force:
            raise OutputExistsError(f"{path} exists; pass --force to replace it")
        if path and os.path.isdir(path):
            raise UsageError(f"{path} is a directory; expected a file path")
    if os.path.abspath(output) == os.path.abspath(source):
        raise UsageError("the output would replace SOURCE; choose another path")
    if not os.path.exists(source):
        raise UsageError(f"{source}: no such file or folder")
    needs_calib = dtype in CALIBRATED
    if needs_calib and calib is None:
        if os.path.isfile(source):
            from .reader import read_model
            from .verify import is_quantized_model

            if is_quantized_model(read_model(source)):
                raise NotImplementedYetError(
                    f"{source} is already quantized, but requantizing it with its own recorded scales and zero "
                    "points (no calibration data) is not implemented yet: pass --calib DATA (real samples: .npy, "
                    ".npz keyed by input name, or a folder of images)")
        raise UsageError(f"--dtype {dtype} needs calibration data: --calib DATA (.npy, .npz keyed by input name, "
                         "or a folder of images); --calib random only for a smoke test")

    timings: dict[str, float] = {}
    t0 = time.time()
    src = _load_source(source, progress)
    try:
        timings["load"] = time.time() - t0
        if needs_calib and len(src.keys) > 1:
            raise NotImplementedYetError(f"{source} has {len(src.keys)} signatures ({', '.join(src.keys)}); "
                                         f"calibrated quantization (--dtype {dtype}) of several signatures is not "
                                         "implemented yet")
        data: CalibrationData | None = None
        if calib is not None:
            data = load_calibration(calib, src.inputs, mean=mean_v, std=std_v, samples=samples, seed=seed)
            _log(progress, f"calibration data: {len(data)} samples ({data.kind})")
            for w in data.warnings:
                _log(progress, f"WARNING: {w}")
        result = QuantizeResult(source=source, output=output, dtype=dtype, io={"input": io_in, "output": io_out},
                                granularity=granularity, target=target, size_before=src.size)
        if data is not None:
            calib_samples, held = data.split()
            result.calibration = data.to_json()
            result.warnings.extend(data.warnings)
            result.evaluated_on = (f"{len(held)} held-back samples" if data.kind != "random"
                                   else f"{len(held)} held-back RANDOM samples")
        else:
            calib_samples = []
            rnd = load_calibration("random", src.inputs, samples=EVAL_RANDOM_SAMPLES + 1, seed=seed + 1)
            held = rnd.samples[:EVAL_RANDOM_SAMPLES]
            result.calibration = {"kind": "none"}
            result.evaluated_on = f"{len(held)} random inputs in [-1, 1] (no --calib given)"

        per_tensor = granularity == "per-tensor"
        t0 = time.time()
        _log(progress, f"converting ({dtype}{', ' + granularity if needs_calib else ''}, I/O {io_in}/{io_out})")
        conv = converter_for(src.saved_dir, src.keys if not needs_calib else src.keys[:1], *_recipe(dtype, io_in, io_out),
                             per_tensor, _dataset(src.inputs, calib_samples, progress_bar) if needs_calib else None)
        blob = _run_converter(conv, dtype)
        if dtype == "uint8":
            from .uint8_rewrite import int8_to_uint8

            blob = int8_to_uint8(blob)
        timings["calibrate_convert"] = time.time() - t0
        result.size_after = len(blob)

        parent = os.path.dirname(os.path.abspath(output)) or "."
        os.makedirs(parent, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            from .reader import read_model

            result.float_ops = float_ops(read_model(tmp_path)) if dtype in ("int8", "uint8") else []
            if result.float_ops:
                result.warnings.append(f"{len(result.float_ops)} op(s) still compute in float")
            if evaluate and held:
                t0 = time.time()
                _log(progress, f"evaluating on {len(held)} samples")
                ref = _reference(src, held)
                result.accuracy = _metrics(src, ref, _run_quantized(tmp_path, src, held))
                if per_tensor:
                    _log(progress, "converting int8 per-channel too, for comparison")
                    conv = converter_for(src.saved_dir, src.keys[:1], *_recipe("int8", io_in, io_out), False,
                                         _dataset(src.inputs, calib_samples, progress_bar))
                    pc_blob = _run_converter(conv, dtype)
                    with tempfile.TemporaryDirectory(prefix="tflite-inverter-pc-") as d:
                        pc_path = os.path.join(d, "per_channel.tflite")
                        with open(pc_path, "wb") as fh:
                            fh.write(pc_blob)
                        result.per_channel = _metrics(src, ref, _run_quantized(pc_path, src, held))
                timings["evaluate"] = time.time() - t0
            if target is not None:
                result.target_report = _target_report(blob, target)
            os.replace(tmp_path, output)
        except BaseException:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
            raise
    finally:
        if src.tmp:
            shutil.rmtree(src.tmp, ignore_errors=True)
    timings["total"] = time.time() - start
    result.seconds = timings
    if report:
        _write_json_atomic(report, result.to_json())
    return result


def _write_json_atomic(path: str, obj: dict[str, Any]) -> None:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
