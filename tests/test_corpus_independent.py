"""An independent re-computation of the verifier's verdict on a sample of real corpus files.

The product converts each file (``tflite-inverter convert``); everything after that is this test's
own code and never the product's: the original runs in ai_edge_litert (default kernels, and the
built-in ones for the reference spread) on inputs this test makes, the written SavedModel runs in
plain TensorFlow on the same inputs, and the README's rule is applied here from scratch:

* integer outputs with a quantization scale: >= 99 % of the elements within 1 LSB, none beyond 2;
* float outputs: max abs error <= max(1e-4 x max|ref|, max abs difference of the two kernel sets).

Every file of :data:`SAMPLE` is in tests/test_corpus.py's ``EXPECTED_MATCH``, so the product says
"match" for it; this test says whether an outside check agrees. The sample covers int8 I/O, float,
several signatures, and the BlazeFace graph whose Pad + Conv2D crashed oneDNN (measured also agreeing,
when last run: the uint8 MobileNet v1 0.25 at 0 LSB and litert's RoPE at 2.4e-7 of a 1.4e-4 bound).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import CORPUS_DIR

SAMPLE = [  # (5 files took 117 s of the suite; these 3 cover int8 I/O, several signatures and oneDNN's Pad)
    "tflite-micro__hello_world_int8.tflite",
    "litert-git__multi_signatures.tflite",
    "mediapipe-git__face_detection_front_2019.tflite",
]

#: Run by a child with only ai_edge_litert: every signature (or the plain subgraph) on seeded inputs,
#: with the default kernels and with the built-in ones.
_INTERPRETER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    model, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(1234)
    def feed(d):
        shape = [max(int(x), 1) for x in d["shape"]]
        dt = np.dtype(d["dtype"])
        if dt.kind == "f":
            return rng.uniform(-1, 1, shape).astype(dt)
        if not d["quantization"][0]:  # plain integers are positions, indices or counts here: small
            return rng.integers(0, 4, shape).astype(dt)
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dt)
    def runs(resolver):
        it = Interpreter(model_path=model, experimental_op_resolver_type=resolver)
        sigs = it.get_signature_list()
        res = {}
        for key in (sigs or [None]):
            if key is None:
                it.allocate_tensors()
                ins = {d["name"]: d for d in it.get_input_details()}
                res[""] = (ins, [d["index"] for d in it.get_output_details()], [d["name"] for d in it.get_output_details()])
            else:
                r = it.get_signature_runner(key)
                res[key] = (r.get_input_details(), None, list(r.get_output_details()))
        return it, res
    saved = {}
    meta = {}
    for tag, resolver in (("default", OpResolverType.AUTO), ("builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
        it, res = runs(resolver)
        for key, (ins, idx, outs) in res.items():
            if tag == "default":
                feeds = {n: feed(d) for n, d in sorted(ins.items())}
                for n, a in feeds.items():
                    saved[f"in|{key}|{n}"] = a
            feeds = {n: saved[f"in|{key}|{n}"] for n in sorted(ins)}
            if key == "":
                for n, d in ins.items():
                    it.set_tensor(d["index"], feeds[n])
                it.invoke()
                got = {n: it.get_tensor(i) for n, i in zip(outs, idx)}
                qs = {d["name"]: d["quantization"] for d in it.get_output_details()}
            else:
                got = it.get_signature_runner(key)(**feeds)
                details = it.get_signature_runner(key).get_output_details()
                qs = {n: details[n]["quantization"] for n in got}
            for n, a in got.items():
                saved[f"{tag}|{key}|{n}"] = np.asarray(a)
            meta[key] = {"inputs": sorted(ins), "outputs": sorted(got), "scales": {n: float(q[0]) for n, q in qs.items()}}
    np.savez(out, **saved)
    with open(out + ".json", "w") as fh:
        json.dump(meta, fh)
""")

#: Run by a child with only TensorFlow: the SavedModel's signatures on the given inputs.
_TENSORFLOW = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    saved, feeds_path, plan_path, out = sys.argv[1:5]
    plan = json.load(open(plan_path))
    feeds = np.load(feeds_path)
    m = tf.saved_model.load(saved)
    res = {}
    for key, names in plan.items():
        fn = m.signatures[key]
        got = fn(**{sm: tf.constant(feeds[f"in|{names['tflite_key']}|{tl}"]) for sm, tl in names["inputs"].items()})
        for n, v in got.items():
            res[f"{key}|{n}"] = v.numpy()
    np.savez(out, **res)
""")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _match_names(tflite: list[str], saved: list[str]) -> dict[str, str]:
    """saved name -> TFLite name, by the names with everything but letters and digits dropped."""
    by = {_norm(t): t for t in tflite}
    out = {s: by.get(_norm(s)) for s in saved}
    assert None not in out.values() and len(set(out.values())) == len(tflite), (tflite, saved)
    return out


def _judge(ref: np.ndarray, alt: np.ndarray, got: np.ndarray, scale: float) -> tuple[bool, str]:
    assert ref.shape == got.shape, (ref.shape, got.shape)
    if ref.dtype.kind in "iu" and scale > 0:
        d = np.abs(ref.astype(np.int64) - got.astype(np.int64))
        within = float(np.mean(d <= 1))
        return within >= 0.99 and int(d.max()) <= 2, f"lsb: {within:.4f} within 1, max {int(d.max())}"
    if ref.dtype.kind in "iub":
        return bool(np.array_equal(ref, got)), "exact"
    r, g, a = (x.astype(np.float64) for x in (ref, got, alt))
    bound = max(1e-4 * max(float(np.abs(r).max()), 1e-6), float(np.abs(r - a).max()))
    err = float(np.abs(r - g).max())
    return err <= bound, f"float: max abs {err:.3g} <= {bound:.3g}"


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"corpus folder {CORPUS_DIR} is absent")
    tmp = tmp_path_factory.mktemp("independent")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out: dict[str, list[tuple[str, bool, str]]] = {}
    for name in SAMPLE:
        src = CORPUS_DIR / name
        work = tmp / name.removesuffix(".tflite")
        work.mkdir()
        saved = work / "saved"
        conv = subprocess.run([sys.executable, "-m", "tflite_inverter.cli", "convert", str(src), "-o", str(saved)],
                              capture_output=True, text=True, timeout=600, env=env)
        assert conv.returncode == 0, (name, conv.stderr[-1500:])
        ref = work / "ref.npz"
        subprocess.run([sys.executable, "-c", _INTERPRETER, str(src), str(ref)], check=True, timeout=300, env=env)
        meta = json.loads((work / "ref.npz.json").read_text())
        data = np.load(ref)
        # the SavedModel's signatures: one per TFLite signature (same key), or serving_default
        probe = subprocess.run([sys.executable, "-c", "import json,sys,tensorflow as tf; m=tf.saved_model.load("
                                "sys.argv[1]); print(json.dumps({k: [sorted(f.structured_input_signature[1]), "
                                "sorted(f.structured_outputs)] for k, f in m.signatures.items()}))", str(saved)],
                               capture_output=True, text=True, check=True, timeout=300, env=env)
        sigs = json.loads(probe.stdout.strip().splitlines()[-1])
        plan = {}
        for key, m in meta.items():
            sm_key = key or "serving_default"
            sm_in, sm_out = sigs[sm_key]
            plan[sm_key] = {"tflite_key": key, "inputs": _match_names(m["inputs"], sm_in),
                            "outputs": _match_names(m["outputs"], sm_out)}
        (work / "plan.json").write_text(json.dumps(plan))
        got_path = work / "got.npz"
        subprocess.run([sys.executable, "-c", _TENSORFLOW, str(saved), str(ref), str(work / "plan.json"),
                        str(got_path)], check=True, timeout=300, env=env)
        got = np.load(got_path)
        rows = []
        for sm_key, p in plan.items():
            key = p["tflite_key"]
            for sm_name, tl_name in p["outputs"].items():
                ok, why = _judge(data[f"default|{key}|{tl_name}"], data[f"builtin|{key}|{tl_name}"],
                                 got[f"{sm_key}|{sm_name}"], meta[key]["scales"].get(tl_name, 0.0))
                rows.append((f"{sm_key}/{tl_name}", ok, why))
        out[name] = rows
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("name", SAMPLE)
def test_an_outside_recomputation_agrees_with_the_match(verdicts, name):
    rows = verdicts[name]
    assert rows, f"{name}: no output compared"
    assert all(ok for _, ok, _ in rows), (name, rows)
