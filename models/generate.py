"""Build the small sample models in ``models/`` with the stock TFLite converter.

Run with ``.venv/bin/python models/generate.py`` (or ``make models``). Every weight comes from a seeded
numpy RNG and every representative dataset from a seeded RNG, so running the script twice writes the
same bytes; a file is only rewritten when its content changes. The script is quiet: TensorFlow's and
the converter's logging is silenced, and it prints one line per file it (re)writes. ``models/README.md``
is regenerated from the files it wrote (what each shows and its size).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 20240601
INPUT_SHAPE = (1, 32, 32, 3)


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Send the C++ converter's stdout/stderr chatter (MLIR, absl) to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _tf():
    with _silenced():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # pragma: no cover - absl ships with TensorFlow
            pass
    return tf


# -- the models -------------------------------------------------------------------------------------


def conv_net(tf):
    """Conv2D+ReLU -> DepthwiseConv2D -> MaxPool -> Dense -> softmax on a 32x32x3 image."""
    rng = np.random.default_rng(SEED)

    def w(*shape: int, scale: float = 0.2) -> tf.Variable:
        return tf.Variable(rng.normal(0.0, scale, shape).astype(np.float32))

    class ConvNet(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_w = w(3, 3, 3, 16)
            self.conv_b = w(16, scale=0.05)
            self.dw_w = w(3, 3, 16, 1)
            self.dw_b = w(16, scale=0.05)
            self.fc_w = w(8 * 8 * 16, 10, scale=0.05)
            self.fc_b = w(10, scale=0.05)

        @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name="image")])
        def __call__(self, x):
            x = tf.nn.relu(tf.nn.conv2d(x, self.conv_w, strides=1, padding="SAME") + self.conv_b)
            x = tf.nn.depthwise_conv2d(x, self.dw_w, strides=[1, 1, 1, 1], padding="SAME") + self.dw_b
            x = tf.nn.max_pool2d(x, ksize=4, strides=4, padding="VALID")
            x = tf.reshape(x, [-1, 8 * 8 * 16])
            return tf.nn.softmax(tf.matmul(x, self.fc_w) + self.fc_b)

    return ConvNet()


def representative_dataset() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(SEED + 1)
    for _ in range(16):
        yield [rng.uniform(-1.0, 1.0, INPUT_SHAPE).astype(np.float32)]


def _converter(tf, module):
    fn = module.__call__.get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], module)


def float32(tf) -> bytes:
    return _converter(tf, conv_net(tf)).convert()


def float16(tf) -> bytes:
    conv = _converter(tf, conv_net(tf))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def dynamic_int8(tf) -> bytes:
    conv = _converter(tf, conv_net(tf))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()


def _full_int(tf, io_type, per_channel: bool = True, int_io: bool = True) -> bytes:
    conv = _converter(tf, conv_net(tf))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int_io:
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return conv.convert()


def int8(tf) -> bytes:
    return _full_int(tf, tf.int8)


def int8_uint8_io(tf) -> bytes:
    return _full_int(tf, tf.uint8)


def per_tensor_int8(tf) -> bytes:
    return _full_int(tf, tf.int8, per_channel=False)


def two_signatures(tf) -> bytes:
    spec = tf.TensorSpec([4], tf.float32)

    class TwoOps(tf.Module):
        @tf.function(input_signature=[spec, spec])
        def add(self, x, y):
            return {"sum": x + y}

        @tf.function(input_signature=[spec, spec])
        def mul(self, x, y):
            return {"product": x * y}

    m = TwoOps()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(m, tmp, signatures={"add": m.add.get_concrete_function(),
                                                "mul": m.mul.get_concrete_function()})
        return tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["add", "mul"]).convert()


def while_loop(tf) -> bytes:
    class Loop(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.int32, name="n")])
        def __call__(self, x, n):
            _, y = tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, v * 1.5 + 1.0),
                                 [tf.constant(0), x])
            return y

    return _converter(tf, Loop()).convert()


def dynamic_batch(tf) -> bytes:
    rng = np.random.default_rng(SEED + 2)

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.normal(0.0, 0.3, (8, 4)).astype(np.float32))
            self.b = tf.Variable(rng.normal(0.0, 0.1, (4,)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="features")])
        def __call__(self, x):
            return tf.nn.relu(tf.matmul(x, self.w) + self.b)

    return _converter(tf, Dense()).convert()


MODELS: dict[str, tuple[Callable, str]] = {
    "float32.tflite": (float32, "float32 conv net: CONV_2D+ReLU, DEPTHWISE_CONV_2D, MAX_POOL_2D, "
                                "FULLY_CONNECTED, SOFTMAX on a 1x32x32x3 input"),
    "float16.tflite": (float16, "the same net with float16 weights, each behind a DEQUANTIZE op"),
    "dynamic_int8.tflite": (dynamic_int8, "dynamic-range quantization: int8 dense weights, float activations"),
    "int8.tflite": (int8, "full-integer int8 with int8 input/output and per-channel conv weights"),
    "int8_uint8_io.tflite": (int8_uint8_io, "full-integer int8 inside, uint8 input and uint8 output"),
    "per_tensor_int8.tflite": (per_tensor_int8, "full-integer int8 with per-channel quantization disabled "
                                                "(one scale per weight tensor)"),
    "two_signatures.tflite": (two_signatures, "two SignatureDefs, `add` (x, y -> sum) and `mul` "
                                              "(x, y -> product), one subgraph each"),
    "while_loop.tflite": (while_loop, "`tf.while_loop` -> WHILE op with cond and body subgraphs"),
    "dynamic_batch.tflite": (dynamic_batch, "dense layer with input shape [None, 8] (shape_signature -1)"),
}


def write_readme(sizes: dict[str, int]) -> bool:
    lines = [
        "# Sample models",
        "",
        "Small models built by `models/generate.py` (`make models`) with the stock `tf.lite.TFLiteConverter`",
        "from seeded weights, so regenerating them writes the same bytes. They are the reader's and the",
        "tests' own fixtures; the real third-party corpus lives outside the repository in `../shared/models`.",
        "",
        "| file | what it shows | bytes |",
        "| --- | --- | ---: |",
    ]
    for name, (_, what) in MODELS.items():
        lines.append(f"| `{name}` | {what} | {sizes[name]} |")
    lines += ["", f"Total: {sum(sizes.values())} bytes.", ""]
    return _write(HERE / "README.md", "\n".join(lines).encode())


def _write(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def calibration_images(count: int = 16, size: int = 32) -> dict[str, bytes]:
    """Small smooth RGB images (seeded) for the demo's image-folder calibration."""
    import io

    from PIL import Image

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = {}
    for i in range(count):
        a, b, c = rng.uniform(-1, 1, size=(3, 3))
        img = np.stack([a[k] * xx + b[k] * yy + c[k] * xx * yy for k in range(3)], axis=-1)
        img = img + 0.05 * rng.normal(size=img.shape)
        img = np.clip((img - img.min()) / (np.ptp(img) + 1e-6) * 255, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=True)
        out[f"calib/img_{i:02d}.png"] = buf.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="only these files (default: all)")
    args = ap.parse_args(argv)
    unknown = set(args.names) - set(MODELS)
    if unknown:
        ap.error(f"unknown model(s): {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    tf = _tf()
    for name, (build, _) in MODELS.items():
        if args.names and name not in args.names:
            continue
        with _silenced():
            data = build(tf)
        if _write(HERE / name, data):
            print(f"wrote models/{name} ({len(data)} bytes)")
    if not args.names:
        (HERE / "calib").mkdir(exist_ok=True)
        for name, data in calibration_images().items():
            if _write(HERE / name, data):
                print(f"wrote models/{name}")
    sizes = {name: (HERE / name).stat().st_size for name in MODELS if (HERE / name).exists()}
    if len(sizes) == len(MODELS) and write_readme(sizes):
        print("wrote models/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
