"""TensorFlow work runs in a child process: a crash, a cap, Ctrl-C or SIGTERM never kills the tool,
never leaves temp files, and every written output honours the umask.

The crashes are real: ``TFLITE_INVERTER_FAULT=STAGE`` makes the TensorFlow child SIGSEGV itself at
a named stage of the real pipeline (isolation.fault_point), and a user SavedModel whose graph
crashes TensorFlow's oneDNN rewrites is quantized with them on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tflite_inverter.errors import ResourceLimitError, TensorFlowCrashError
from tflite_inverter.isolation import Worker, run_isolated

ROOT = Path(__file__).resolve().parent.parent
FLOAT = str(ROOT / "models" / "float32.tflite")


@pytest.fixture(autouse=True)
def _fresh_child_per_call(monkeypatch):
    """Every call here starts (and removes) its own child, as the CLI does (no reused child)."""
    from tflite_inverter import isolation

    monkeypatch.setattr(isolation, "_reused", None)


def _cli(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process whose TMPDIR is ``tmp / 'sys-tmp'`` (checked for litter)."""
    systmp = tmp / "sys-tmp"
    systmp.mkdir(exist_ok=True)
    full = dict(os.environ, TMPDIR=str(systmp), TF_CPP_MIN_LOG_LEVEL="3", **env)
    return subprocess.run([sys.executable, "-m", "tflite_inverter.cli", *args], capture_output=True, text=True,
                          env=full, timeout=600)


def _litter(tmp: Path) -> list[str]:
    """Our temp files and folders left in ``tmp`` (the output's folder) or its sys-tmp."""
    found = []
    for folder in (tmp, tmp / "sys-tmp"):
        if folder.is_dir():
            found += [f"{folder.name}/{p}" for p in os.listdir(folder)
                      if p.startswith((".tflite-inverter-", "tflite-inverter-")) or p.endswith(".tmp")]
    return found


@pytest.mark.parametrize("stage", ["save", "verify"])
def test_a_tensorflow_crash_in_convert_is_a_named_error_and_leaves_nothing(tmp_path, stage):
    out = tmp_path / "sm"
    proc = _cli(["convert", FLOAT, "-o", str(out)], tmp_path, TFLITE_INVERTER_FAULT=stage)
    assert proc.returncode == TensorFlowCrashError.exit_code == 9, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "TensorFlowCrashError" not in last and "Traceback" not in proc.stderr
    assert "float32.tflite: TensorFlow crashed (SIGSEGV) while" in last
    assert ("saving" if stage == "save" else "verifying") in last
    assert not out.exists() and _litter(tmp_path) == []


def test_a_tensorflow_crash_in_quantize_is_a_named_error_and_leaves_nothing(tmp_path):
    out = tmp_path / "q.tflite"
    proc = _cli(["quantize", FLOAT, "-o", str(out), "--calib", "random", "--samples", "8"], tmp_path,
                TFLITE_INVERTER_FAULT="evaluate")
    assert proc.returncode == 9, proc.stderr
    assert "TensorFlow crashed (SIGSEGV) while evaluating" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists() and _litter(tmp_path) == []


def _pad_residual_saved_model(path: str) -> None:
    """A user's SavedModel with the graph oneDNN's layout pass crashes on (a Pad feeding the residual
    operand of Conv2D+BiasAdd+Add), run in a child: saving needs no execution."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=[1, 1, 8, 12]).astype(np.float32))
    b = tf.constant(rng.normal(size=[12]).astype(np.float32))

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 8], tf.float32, name="x")])
        def serve(self, x):
            y = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "VALID"), b) + tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 4]])
            return {"y": tf.nn.relu(y)}

    m = M()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})


def test_a_real_tensorflow_crash_while_quantizing_a_user_savedmodel_is_named(tmp_path, monkeypatch):
    sm = tmp_path / "user_sm"
    run_isolated(_pad_residual_saved_model, {"path": str(sm)}, model="builder")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    with Worker(env={"TF_ENABLE_ONEDNN_OPTS": "1"}) as w:
        from .test_onednn import _onednn_enabled_here

        if not w.call(_onednn_enabled_here, {}, model="probe"):
            pytest.skip("this TensorFlow build has no oneDNN graph rewrites")
    proc = _cli(["quantize", str(sm), "-o", str(tmp_path / "q.tflite"), "--dtype", "float16"], tmp_path,
                TF_ENABLE_ONEDNN_OPTS="1")
    assert proc.returncode == 9, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "user_sm: TensorFlow crashed (SIGSEGV)" in last and "TF_ENABLE_ONEDNN_OPTS=0" in last
    assert not (tmp_path / "q.tflite").exists() and _litter(tmp_path) == []


def test_the_memory_and_time_caps_are_named_errors(tmp_path):
    proc = _cli(["convert", FLOAT, "-o", str(tmp_path / "a")], tmp_path, TFLITE_INVERTER_MEMORY_LIMIT="400M")
    assert proc.returncode == ResourceLimitError.exit_code == 10, proc.stderr
    assert "ran out of memory (cap 0.4 GiB, TFLITE_INVERTER_MEMORY_LIMIT)" in proc.stderr
    proc = _cli(["convert", FLOAT, "-o", str(tmp_path / "b")], tmp_path, TFLITE_INVERTER_TIMEOUT="1")
    assert proc.returncode == 10, proc.stderr
    assert "did not finish within 1 s (TFLITE_INVERTER_TIMEOUT)" in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and _litter(tmp_path) == []


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids


@pytest.mark.parametrize("cmd,trigger,how,code", [
    ("convert", "saving SavedModel", "SIGINT", 130),
    ("convert", "verifying against", "SIGTERM", 143),
    ("convert", "verifying against", "kill-child", 9),
    ("quantize", "converting", "SIGTERM", 143),
    ("quantize", "evaluating", "SIGINT", 130),
])
def test_interrupted_runs_leave_nothing_behind(tmp_path, cmd, trigger, how, code):
    """Ctrl-C (SIGINT to the process group), SIGTERM to the tool, or the TensorFlow child killed (as
    the OOM killer would) at a stage: the named exit code, no output, no temp file anywhere."""
    if sys.platform != "linux":
        pytest.skip("reads /proc")
    systmp = tmp_path / "sys-tmp"
    systmp.mkdir()
    out = tmp_path / ("sm" if cmd == "convert" else "q.tflite")
    args = [cmd, FLOAT, "-o", str(out)] + (["--calib", "random", "--samples", "8"] if cmd == "quantize" else [])
    env = dict(os.environ, TMPDIR=str(systmp), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "tflite_inverter.cli", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    seen = []
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:
            seen.append(line)
            if trigger in line:
                break
            assert time.monotonic() < deadline, seen
        else:
            pytest.fail(f"never reached {trigger!r}: {''.join(seen)[-2000:]}")
        time.sleep(0.3)
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        elif how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            for kid in _children(proc.pid):
                os.kill(kid, signal.SIGKILL)
        rest = proc.stderr.read()
        assert proc.wait(60) == code, "".join(seen) + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # a grandchild that outlived its parent by a moment
    assert not out.exists() and _litter(tmp_path) == []


def test_outputs_honour_the_umask_and_an_empty_output_folder_is_accepted(tmp_path):
    out = tmp_path / "sm"
    out.mkdir()  # empty: accepted
    old = os.umask(0o027)
    try:
        proc = _cli(["convert", FLOAT, "-o", str(out), "--report", str(tmp_path / "r.json")], tmp_path)
        assert proc.returncode == 0, proc.stderr
        proc = _cli(["quantize", FLOAT, "-o", str(tmp_path / "q.tflite"), "--calib", "random", "--samples", "8",
                     "--report", str(tmp_path / "q.json")], tmp_path)
        assert proc.returncode == 0, proc.stderr
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o750
    assert (out / "saved_model.pb").stat().st_mode & 0o777 == 0o640
    for f in ("r.json", "q.tflite", "q.json"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o640, f
    (out / "mine.txt").write_text("x")  # not empty any more: --force needed
    proc = _cli(["convert", FLOAT, "-o", str(out)], tmp_path)
    assert proc.returncode == 8 and (out / "mine.txt").exists()
    assert _litter(tmp_path) == []


def test_the_parent_never_imports_tensorflow(tmp_path):
    code = ("import sys; from tflite_inverter.conversion.pipeline import convert; "
            f"convert({FLOAT!r}, {str(tmp_path / 'sm')!r}); "
            "assert 'tensorflow' not in sys.modules, 'parent imported TensorFlow'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_out_of_memory_in_the_cli_process_is_a_named_resource_error(tmp_path):
    """The parent (no TensorFlow) is capped too: a file whose declared sizes numpy cannot hold ends in
    exit 10 naming the cap, not a MemoryError traceback. The parent's work is replaced by a 3 GiB
    allocation, which succeeds uncapped (np.empty touches nothing) and fails under a 2 GiB cap."""
    script = (
        "import sys, numpy as np\n"
        "import tflite_inverter.conversion.pipeline as c\n"
        "c.convert = lambda *a, **k: np.empty(3 << 30, np.uint8)\n"
        "from tflite_inverter.cli.main import main\n"
        f"sys.exit(main(['convert', 'any.tflite', '-o', {str(tmp_path / 'o')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TFLITE_INVERTER_MEMORY_LIMIT="2G"))
    assert proc.returncode == 10, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "TFLITE_INVERTER_MEMORY_LIMIT" in proc.stderr
    assert "any.tflite" in proc.stderr


def tempfile_gettempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_reused_children_are_kept_per_setting_and_replaced_after_a_crash(monkeypatch, tmp_path):
    """Inside reuse_workers one child serves every call of a setting; another TF_ environment or
    working folder gets its own; a crash is still the named error and the next call gets a fresh child;
    leaving the block closes them and removes their scratch folders."""
    from tflite_inverter import isolation

    with isolation.reuse_workers():
        first = run_isolated(os.getpid, {}, model="m")
        assert run_isolated(os.getpid, {}, model="m") == first
        scratch = run_isolated(tempfile_gettempdir, {}, model="m")
        assert Path(scratch).is_dir()
        before = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1" if before == "0" else "0")  # another setting than now
        other = run_isolated(os.getpid, {}, model="m")
        assert other != first
        if before is None:
            monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
        else:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", before)
        monkeypatch.chdir(tmp_path)
        assert run_isolated(os.getpid, {}, model="m") not in (first, other)
        with pytest.raises(TensorFlowCrashError, match="crashed"):
            run_isolated(_segfault, {}, model="m")
        assert run_isolated(os.getpid, {}, model="m") not in (first, other)
    assert not Path(scratch).exists()
    assert isolation._reused is None
