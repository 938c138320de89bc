"""Calibration data for ``quantize``: ``.npy``, ``.npz``, a folder of images, or explicit random.

Every loader returns the same thing, a :class:`CalibrationData`: a list of samples, each one array
per model input with the input's full shape (batch dimension included) and dtype. Everything is
checked against the model's inputs before any conversion starts, and every problem is a
:class:`~tflite_inverter.errors.UsageError` that names the input and what was expected.

Image folders are decoded with Pillow, resized to the input's HxW (bilinear, no crop) and
normalized either with ``--mean/--std`` (``real = (pixel - mean) / std``, per channel if several
values are given) or, when the source model's input was quantized, with its own parameters: the
uint8 pixel is taken as the value a camera delivers, moved into the source input's integer domain
(``q = pixel`` for uint8, ``q = pixel - 128`` for int8, exactly what the source's uint8->int8 input
QUANTIZE does) and dequantized, ``real = scale * (q - zero_point)``.

``--mean/--std`` apply to every float model input, whatever the data kind:
image pixels, integer *and float* ``.npy``/``.npz`` arrays (given explicitly, they are taken to mean
the stored values are raw, e.g. float pixels 0..255), and ``--calib random``, whose float inputs then
get uniform random uint8 pixels normalized the same way (the range normalized images have). Integer
and bool inputs (token ids, masks) are always fed as stored. A model (all signatures) with no float
input refuses them.

A model with several signatures is calibrated signature by signature (``scope``): an ``.npz`` keys
its arrays ``signature/input`` (a bare ``input`` key feeds that input in every signature that has
it); a ``.npy``, an image folder or ``random`` feeds each signature's single input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError

#: At least this many samples in total: some to calibrate on, at least one held back for the report.
MIN_SAMPLES = 4
#: Fraction of the samples held back from calibration to measure accuracy on.
HOLDOUT_FRACTION = 0.2
#: Samples made by ``--calib random`` when ``--samples`` is not given.
RANDOM_SAMPLES = 64
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")

RANDOM_WARNING = ("RANDOM CALIBRATION DATA (--calib random): activation ranges come from uniform noise, "
                  "not from real inputs. The quantized model's accuracy on real data is unknown and usually "
                  "poor; use it for smoke tests only and calibrate with real samples (--calib DATA).")


@dataclass(frozen=True)
class InputSpec:
    """One model input as calibration sees it."""

    name: str  # the SavedModel signature input name (what samples are keyed by)
    shape: tuple[int | None, ...]  # None: dynamic dimension
    dtype: np.dtype
    aliases: tuple[str, ...] = ()  # other names accepted in an .npz (the .tflite signature/tensor name)
    quant: tuple[float, int, str] | None = None  # source .tflite input's (scale, zero_point, type name)

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"[{dims}] {self.dtype}"


@dataclass
class CalibrationData:
    samples: list[list[np.ndarray]]  # one entry per sample: one array per input, in input order
    kind: str  # "npy", "npz", "images", "random"
    source: str
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, holdout_fraction: float = HOLDOUT_FRACTION) -> tuple[list[list[np.ndarray]],
                                                                       list[list[np.ndarray]]]:
        """(calibration samples, held-back samples): the last ``holdout_fraction`` (at least one)."""
        n = len(self.samples)
        held = max(1, int(round(n * holdout_fraction)))
        held = min(held, n - 1) if n > 1 else 0
        return self.samples[: n - held], self.samples[n - held:]

    def to_json(self) -> dict[str, object]:
        calib, held = self.split()
        return {"kind": self.kind, "source": self.source, "samples": len(self.samples),
                "calibration_samples": len(calib), "held_back_samples": len(held), "warnings": list(self.warnings)}


def parse_floats(text: str | Sequence[float] | float | None, what: str) -> list[float] | None:
    """``"127.5"`` or ``"123.7,116.3,103.5"`` (or a number / list from Python) -> list of floats."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return [float(text)]
    if not isinstance(text, str):
        return [float(v) for v in text]
    try:
        vals = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected a number or comma-separated numbers (one per channel)") from None
    if not vals:
        raise UsageError(f"{what} {text!r}: expected a number or comma-separated numbers")
    return vals


def load_calibration(calib: str, inputs: Sequence[InputSpec], *, mean: str | Sequence[float] | float | None = None,
                     std: str | Sequence[float] | float | None = None, samples: int | None = None, seed: int = 0,
                     scope: str | None = None, other_scopes: Mapping[str, Sequence[str]] | None = None
                     ) -> CalibrationData:
    """Load and check calibration data for ``inputs`` (see the module docstring for the formats).

    ``mean``/``std``: one value or one per channel (numbers, or text like ``"127.5"`` / ``"0,0,0"``).
    ``scope``: the signature ``inputs`` belong to, when the model has several (``other_scopes``: the
    others' input names, whose ``.npz`` arrays this signature ignores); every error then names the
    signature.
    """
    if scope is None:
        check_mean_std_applies(mean, [inputs])
    try:
        return _load(calib, inputs, mean, std, samples, seed, scope, other_scopes)
    except UsageError as exc:
        if scope is None:
            raise
        raise UsageError(f"signature {scope!r}: {exc}") from None


def check_mean_std_applies(mean: str | Sequence[float] | float | None,
                           input_sets: Sequence[Sequence[InputSpec]]) -> None:
    """``--mean/--std`` given for a model (all its signatures' inputs) with no float input: a usage error."""
    if mean is None:
        return
    specs = [s for inputs in input_sets for s in inputs]
    if specs and not any(np.dtype(s.dtype).kind == "f" for s in specs):
        kinds = ", ".join(f"{s.name!r} {np.dtype(s.dtype)}" for s in specs)
        raise UsageError(f"--mean/--std normalize float inputs; this model has none ({kinds}): its integer inputs "
                         "are fed as stored, drop --mean/--std")


def _load(calib: str, inputs: Sequence[InputSpec], mean: str | Sequence[float] | float | None,
          std: str | Sequence[float] | float | None, samples: int | None, seed: int, scope: str | None,
          other_scopes: Mapping[str, Sequence[str]] | None) -> CalibrationData:
    mean, std = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    if not inputs:
        raise UsageError("the model has no inputs to calibrate")
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together: pass both or neither")
    if std is not None and any(s == 0 for s in std):
        raise UsageError("--std must not be 0")
    if samples is not None and samples < MIN_SAMPLES:
        raise UsageError(f"--samples {samples}: at least {MIN_SAMPLES} are needed (some to calibrate on, at least "
                         "one held back to measure accuracy)")
    if calib == "random":
        data = _random(inputs, samples or RANDOM_SAMPLES, seed, mean, std)
    elif os.path.isdir(calib):
        data = _images(calib, inputs, mean, std, samples)
    elif not os.path.exists(calib):
        raise UsageError(f"--calib {calib}: no such file or folder (expected .npy, .npz, a folder of images, "
                         "or 'random')")
    elif calib.endswith(".npz"):
        data = _npz(calib, inputs, mean, std, scope, other_scopes or {})
    elif calib.endswith(".npy"):
        data = _npy(calib, inputs, mean, std)
    else:
        raise UsageError(f"--calib {calib}: unknown kind; expected a .npy (one input), a .npz keyed by input "
                         "name, a folder of images, or 'random'")
    n = len(data.samples)
    if samples is not None and data.kind != "random":
        if n < samples:
            raise UsageError(f"--calib {calib}: --samples {samples} asked for, only {n} available")
        data.samples = data.samples[:samples]
        n = samples
    if n < MIN_SAMPLES:
        raise UsageError(f"--calib {calib}: {n} sample(s); at least {MIN_SAMPLES} are needed (some to calibrate "
                         "on, at least one held back to measure accuracy); a few hundred real samples are better")
    return data


# -- numpy files ----------------------------------------------------------------------------------
def _read_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"--calib {path}: cannot read as .npy ({exc})") from None


def _npy(path: str, inputs: Sequence[InputSpec], mean: Sequence[float] | None, std: Sequence[float] | None
         ) -> CalibrationData:
    if len(inputs) != 1:
        names = ", ".join(repr(s.name) for s in inputs)
        raise UsageError(f"--calib {path}: a .npy holds one input, the model has {len(inputs)} ({names}); use an "
                         ".npz keyed by input name")
    arr = _read_npy(path)
    rows = _rows(arr, inputs[0], path, mean, std)
    return CalibrationData([[r] for r in rows], "npy", path)


def _npz(path: str, inputs: Sequence[InputSpec], mean: Sequence[float] | None, std: Sequence[float] | None,
         scope: str | None = None, other_scopes: Mapping[str, Sequence[str]] | None = None) -> CalibrationData:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.files)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"--calib {path}: cannot read as .npz ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"--calib {path}: not an .npz archive")
    used: set[str] = set()
    per_input = []
    for spec in inputs:
        names = (spec.name, *spec.aliases)
        scoped = tuple(f"{scope}/{n}" for n in names) if scope is not None else ()
        key = next((k for k in (*scoped, *names) if k in keys), None)
        if key is None and len(inputs) == 1 and len(keys) == 1 and scope is None:
            key = keys[0]  # one input, one array: the name does not matter
        if key is None:
            want = f"'{scope}/{spec.name}' or '{spec.name}'" if scope is not None else repr(spec.name)
            raise UsageError(f"--calib {path}: no array for input {want} (expected shape "
                             f"{spec.describe()} with a leading sample axis); the archive has: "
                             f"{', '.join(keys) or 'nothing'}")
        used.add(key)
        try:
            arr = archive[key]
        except (OSError, ValueError) as exc:
            raise UsageError(f"--calib {path}: cannot read array {key!r} ({exc})") from None
        per_input.append(_rows(arr, spec, f"{path}[{key}]", mean, std))
    other_scopes = other_scopes or {}
    others = {f"{o}/{n}" for o, names in other_scopes.items() for n in names} | {
        n for names in other_scopes.values() for n in names}  # another signature's arrays
    extra = [k for k in keys if k not in used and k not in others]
    if extra:
        raise UsageError(f"--calib {path}: array(s) {', '.join(map(repr, extra))} match no model input; the model's "
                         f"inputs are {', '.join(repr(s.name) for s in inputs)}")
    counts = {s.name: len(r) for s, r in zip(inputs, per_input)}
    if len(set(counts.values())) > 1:
        raise UsageError(f"--calib {path}: inputs have different sample counts "
                         f"({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    return CalibrationData([list(s) for s in zip(*per_input)], "npz", path)


def _matches(got: Sequence[int], want: Sequence[int | None]) -> bool:
    return len(got) == len(want) and all(w is None or w == g for g, w in zip(got, want))


def _rows(arr: np.ndarray, spec: InputSpec, where: str, mean: Sequence[float] | None,
          std: Sequence[float] | None) -> list[np.ndarray]:
    """Split a stacked array into samples of the input's full shape, with the input's dtype.

    ``[N, *shape]`` gives N samples of ``shape``; when the input's batch dimension is 1 or dynamic,
    ``[N, *shape[1:]]`` (samples stacked on the batch axis) is accepted too.
    """
    want = spec.shape
    example = f"[N, {', '.join('?' if d is None else str(d) for d in want)}]"
    if arr.ndim == len(want) + 1 and _matches(arr.shape[1:], want):
        rows = [arr[i] for i in range(arr.shape[0])]
    elif want and want[0] in (1, None) and arr.ndim == len(want) and _matches(arr.shape[1:], want[1:]):
        rows = [arr[i:i + 1] for i in range(arr.shape[0])]
    else:
        raise UsageError(f"--calib {where}: input {spec.name!r} expects samples of shape {spec.describe()}, "
                         f"stacked as {example}; got an array of shape {list(arr.shape)}")
    conv = _converter(arr.dtype, spec, where, mean, std)
    return [conv(r) for r in rows]


def _converter(dt: np.dtype, spec: InputSpec, where: str, mean: Sequence[float] | None,
               std: Sequence[float] | None):
    """How to turn one stored sample into the input's dtype (checks the dtype once)."""
    target = np.dtype(spec.dtype)
    if target.kind == "f":
        if dt.kind in "fiu" and mean is not None:
            return lambda a: normalize(a, mean, std, spec).astype(target)
        if dt.kind == "f":
            return lambda a: np.asarray(a, dtype=target)
        if dt.kind in "iu":
            if spec.quant is not None and (dt == np.uint8 or dt == _int_dtype(spec.quant[2])):
                scale, zp, tname = spec.quant
                shift = -128 if (dt == np.uint8 and tname == "INT8") else 0
                return lambda a: (scale * (a.astype(np.float64) + shift - zp)).astype(target)
            raise UsageError(f"--calib {where}: input {spec.name!r} is {target}, the data is {dt}; pass float data, "
                             "or --mean/--std to normalize integer data")
        raise UsageError(f"--calib {where}: input {spec.name!r} is {target}, the data is {dt}")
    if target.kind in "iu":
        if dt.kind not in "iu":
            raise UsageError(f"--calib {where}: input {spec.name!r} is {target}, the data is {dt} (integers needed)")
        info = np.iinfo(target)

        def to_int(a: np.ndarray) -> np.ndarray:
            if a.size and (a.min() < info.min or a.max() > info.max):
                raise UsageError(f"--calib {where}: values of input {spec.name!r} do not fit {target}")
            return a.astype(target)

        return to_int
    if target.kind == "b":
        if dt.kind not in "biu":
            raise UsageError(f"--calib {where}: input {spec.name!r} is bool, the data is {dt}")
        return lambda a: a.astype(bool)
    raise UsageError(f"--calib {where}: input {spec.name!r} has dtype {target}, which cannot be calibrated")


def _int_dtype(type_name: str) -> np.dtype | None:
    return {"INT8": np.dtype(np.int8), "UINT8": np.dtype(np.uint8), "INT16": np.dtype(np.int16)}.get(type_name)


def normalize(a: np.ndarray, mean: Sequence[float], std: Sequence[float], spec: InputSpec) -> np.ndarray:
    """``(a - mean) / std`` with one value, or one per channel (last axis)."""
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    channels = a.shape[-1] if a.ndim else 1
    for what, v in (("--mean", m), ("--std", s)):
        if v.size not in (1, channels):
            raise UsageError(f"{what} has {v.size} values; input {spec.name!r} has {channels} channels "
                             "(give one value, or one per channel)")
    return (a.astype(np.float64) - m) / s


# -- images ---------------------------------------------------------------------------------------
def _image_files(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, f))
    return found


def _images(folder: str, inputs: Sequence[InputSpec], mean: Sequence[float] | None, std: Sequence[float] | None,
            samples: int | None) -> CalibrationData:
    if len(inputs) != 1:
        names = ", ".join(repr(s.name) for s in inputs)
        raise UsageError(f"--calib {folder}: an image folder feeds one input, the model has {len(inputs)} ({names}); "
                         "use an .npz keyed by input name")
    spec = inputs[0]
    shape = spec.shape
    if len(shape) == 4 and shape[0] in (1, None):
        h, w, c = shape[1:]
        batched = True
    elif len(shape) == 3:
        h, w, c = shape
        batched = False
    else:
        raise UsageError(f"--calib {folder}: input {spec.name!r} has shape {spec.describe()}; an image folder needs "
                         "an image input [1, H, W, C] or [H, W, C] (NHWC)")
    if h is None or w is None:
        hint = "x".join([*(["1"] if batched else []), "H", "W", "C" if c is None else str(c)])
        raise UsageError(f"--calib {folder}: input {spec.name!r} has shape {spec.describe()}: the image size is "
                         f"dynamic, so images cannot be resized to it; set it with --input-shape {spec.name}={hint} "
                         "(or give an .npy of prepared samples)")
    if c not in (1, 3, 4):
        raise UsageError(f"--calib {folder}: input {spec.name!r} has {c} channels; images give 1 (L), 3 (RGB) "
                         "or 4 (RGBA)")
    if np.dtype(spec.dtype).kind == "f" and mean is None and spec.quant is None:
        raise UsageError(f"--calib {folder}: input {spec.name!r} is float32 and the source model records no input "
                         "quantization, so pixel normalization is unknown: pass --mean M --std S (e.g. --mean 127.5 "
                         "--std 127.5 for [-1, 1], --mean 0 --std 255 for [0, 1])")
    files = _image_files(folder)
    if not files:
        raise UsageError(f"--calib {folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if samples is not None:
        if len(files) < samples:
            raise UsageError(f"--calib {folder}: --samples {samples} asked for, the folder has {len(files)} images")
        files = files[:samples]
    from PIL import Image, UnidentifiedImageError  # only image calibration needs Pillow

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    conv = _converter(np.dtype(np.uint8), spec, folder, mean, std)
    rows = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                px = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UsageError(f"--calib {folder}: cannot decode image {f} ({exc})") from None
        px = px.reshape(h, w, c)
        if batched:
            px = px[None]
        rows.append([conv(px)])
    return CalibrationData(rows, "images", folder)


# -- random ---------------------------------------------------------------------------------------
def _random(inputs: Sequence[InputSpec], n: int, seed: int, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> CalibrationData:
    rng = np.random.default_rng(seed)
    per_input = []
    for spec in inputs:
        dt = np.dtype(spec.dtype)
        if dt.kind != "f":
            raise UsageError(f"--calib random: input {spec.name!r} is {dt}; random data is only made for float "
                             "inputs, pass real samples (.npz)")
        shape = tuple(1 if d is None else d for d in spec.shape)
        if mean is not None:  # random pixels, normalized as images would be
            per_input.append([normalize(rng.integers(0, 256, size=shape), mean, std, spec).astype(dt)
                              for _ in range(n)])
            continue
        if spec.quant is not None:  # the source's representable range is a good guess of the input range
            scale, zp, tname = spec.quant
            lo_q, hi_q = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}.get(tname, (-128, 127))
            lo, hi = scale * (lo_q - zp), scale * (hi_q - zp)
        else:
            lo, hi = -1.0, 1.0
        per_input.append([rng.uniform(lo, hi, size=shape).astype(dt) for _ in range(n)])
    return CalibrationData([list(s) for s in zip(*per_input)], "random", "random", [RANDOM_WARNING])
