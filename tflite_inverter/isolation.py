"""Run TensorFlow work on a user's model in a child process that cannot take the tool down.

Everything that executes a user's model in TensorFlow (building and saving the rebuilt graph,
running it for verification, the converter's calibration, quantize's evaluation and accuracy
report) runs in a child process (``python -m tflite_inverter.isolation``, a fresh interpreter that
does not re-run the caller's ``__main__``, talking pickles over a socket pair); the parent never
imports TensorFlow. TensorFlow can crash on real graphs (a SIGSEGV in a oneDNN fusion, an abort in a
kernel), allocate without bound on a hostile file, or loop forever; in the child that becomes a
named error in the parent:

- the child dies by a signal -> :class:`TensorFlowCrashError` (exit 9) naming the model, the
  stage it was in (the last progress message) and the signal;
- ``MemoryError`` / TensorFlow's ``ResourceExhaustedError`` under the child's address-space cap
  (``TFLITE_INVERTER_MEMORY_LIMIT``: bytes, or with a K/M/G suffix, ``0`` for none; default 80 % of
  the machine's memory), or the optional wall-clock limit ``TFLITE_INVERTER_TIMEOUT`` (seconds) ->
  :class:`ResourceLimitError` (exit 10).

Temporary files of the child go to a scratch folder the parent creates and always removes (the
child's ``tempfile.tempdir`` and ``TMPDIR`` point there), so a crashed child leaves nothing behind.
The child ignores SIGINT (the parent handles Ctrl-C and terminates it) and dies with its parent
(``PR_SET_PDEATHSIG`` on Linux).

:class:`Worker` keeps one child for many calls (the corpus tests: one TensorFlow import per
setting, not per file); a call that kills the child raises for that call only, and the next call
starts a fresh child. Inside :func:`reuse_workers` (a Python caller making many calls, e.g. the
test suite), :func:`run_isolated` keeps its child for the next call made from the same working
directory with the same TensorFlow / tool environment (``TF_*``, ``TFLITE_INVERTER_*``, ``TMPDIR``,
``OMP_*``), so TensorFlow is imported once per setting instead of once per call; the children
are closed when the block ends.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import InverterError, ResourceLimitError, TensorFlowCrashError

#: Test hook: ``TFLITE_INVERTER_FAULT=STAGE`` makes the child kill itself with SIGSEGV when it
#: reaches the stage of that name (see :func:`fault_point`), so tests can provoke a crash at a chosen
#: point of the real pipeline.
FAULT_ENV = "TFLITE_INVERTER_FAULT"
MEMORY_ENV = "TFLITE_INVERTER_MEMORY_LIMIT"
#: ``TFLITE_INVERTER_IN_PROCESS=1`` runs the work in the calling process (a debugger, a profiler, a
#: test that patches internals); a TensorFlow crash then takes the caller down.
IN_PROCESS_ENV = "TFLITE_INVERTER_IN_PROCESS"
TIMEOUT_ENV = "TFLITE_INVERTER_TIMEOUT"

_progress_conn: Any = None  # in the child: the pipe progress messages go through
_progress_sink: Callable[[str], None] | None = None  # in-process runs: the caller's progress
_reused: dict[tuple[Any, ...], Worker] | None = None  # inside reuse_workers(): children by setting


def _parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KMGT" else text
    try:
        value = float(number) * mult
    except ValueError:
        raise InverterError(f"{MEMORY_ENV}={text!r}: expected bytes, e.g. 8G, 512M or 0 for no limit") from None
    return int(value)


def memory_limit() -> int | None:
    """The child's address-space cap in bytes (None: no cap)."""
    given = os.environ.get(MEMORY_ENV)
    if given is not None:
        value = _parse_bytes(given)
        return value if value > 0 else None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return max(int(total * 0.8), 4 << 30)


def apply_memory_limit(hard: bool = False) -> str | None:
    """Cap this process's address space at :func:`memory_limit` (``hard``: the child that runs
    TensorFlow, which may not raise it again; else only the soft limit, so that child can still set
    its own). Returns a warning when the OS refuses the cap, None otherwise."""
    mem = memory_limit()
    if mem is None:
        return None
    import resource

    try:
        current_soft, current_hard = resource.getrlimit(resource.RLIMIT_AS)
        for current in (current_soft, current_hard):  # never raise a limit that is already lower
            if current != resource.RLIM_INFINITY and current < mem:
                mem = current
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem if hard else current_hard))
    except (ValueError, OSError) as exc:  # e.g. a hard limit below the cap: say so, do not pretend
        return f"WARNING: the memory cap ({MEMORY_ENV}) could not be applied: {exc}"
    return None


def time_limit() -> float | None:
    given = os.environ.get(TIMEOUT_ENV)
    if not given:
        return None
    try:
        value = float(given)
    except ValueError:
        raise InverterError(f"{TIMEOUT_ENV}={given!r}: expected seconds") from None
    return value if value > 0 else None


def _fmt_bytes(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def progress(msg: str) -> None:
    """Report a stage from inside the child (the parent prints it and names it if the child dies)."""
    if _progress_conn is not None:
        _progress_conn.send(("progress", msg))
    elif _progress_sink is not None:
        _progress_sink(msg)


def fault_point(stage: str) -> None:
    """Crash here (SIGSEGV) when ``TFLITE_INVERTER_FAULT`` names this stage: a test hook."""
    if os.environ.get(FAULT_ENV) == stage:
        os.kill(os.getpid(), signal.SIGSEGV)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _child_main(fd: int) -> None:
    """The child's loop: first message the caller's ``sys.path``, then ``(module, function, kwargs)``
    requests until ``None``; each answered with ``("ok", result)`` or an error tuple."""
    global _progress_conn
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    conn = Connection(fd)
    sys.path[:] = conn.recv()
    cap_failed = apply_memory_limit(hard=True)
    tempfile.tempdir = os.environ.get("TMPDIR") or None
    _progress_conn = conn
    if cap_failed:
        progress(cap_failed)
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        module, name, kwargs = request
        try:
            fn = getattr(importlib.import_module(module), name)
            result = fn(**kwargs)
            conn.send(("ok", result))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the parent
            conn.send(_describe(exc))


#: How running out of the address-space cap shows when it is not a MemoryError: a shared library
#: that cannot be mapped (TensorFlow's import), ENOMEM from the OS, TensorFlow's allocator, C++'s
#: std::bad_alloc turned into an exception.
_OOM_TEXT = ("failed to map segment", "cannot allocate memory", "out of memory", "std::bad_alloc", "oom when allocating")


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return True
    if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM
        return True
    text = str(exc).lower()
    return isinstance(exc, (ImportError, OSError, RuntimeError)) and any(t in text for t in _OOM_TEXT)


def _describe(exc: BaseException) -> tuple[str, Any, str]:
    """An exception as it crosses the pipe: the object itself when it pickles, else its text."""
    import pickle

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    kind = "memory" if _out_of_memory(exc) else "error"
    try:
        pickle.loads(pickle.dumps(exc))
        return (kind, exc, tb)
    except Exception:  # noqa: BLE001 - an exception type that does not pickle
        return (kind, f"{type(exc).__name__}: {exc}", tb)


class Worker:
    """One child process for TensorFlow work, restarted after a crash (see module docstring)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self._proc: Any = None
        self._conn: Any = None
        self.scratch: str | None = None

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        self.scratch = tempfile.mkdtemp(prefix="tflite-inverter-scratch-")
        ours, theirs = socket.socketpair()
        # TMPDIR: the child's temp files (and its interpreter grandchild's) land in the scratch folder;
        # env before TensorFlow is imported there (it reads TF_ENABLE_ONEDNN_OPTS at import).
        env = dict(os.environ, TMPDIR=self.scratch, **self.env)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "tflite_inverter.isolation", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(list(sys.path))

    def call(self, func: Callable[..., Any], kwargs: Mapping[str, Any], *, model: str, what: str = "",
             progress: Callable[[str], None] | None = None, timeout: float | None = None) -> Any:
        """``func(**kwargs)`` in the child; its exceptions are re-raised here, a crash becomes a named error."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        timeout = time_limit() if timeout is None else timeout
        stage = what or "starting"
        self._conn.send((func.__module__, func.__qualname__, dict(kwargs)))
        in_flight = True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                if self._conn.poll(wait):
                    try:
                        kind, payload, *rest = self._conn.recv()
                    except (EOFError, OSError):
                        _wait(self._proc, 5)
                        raise self._crashed(model, stage) from None
                    if kind == "progress":
                        stage = payload
                        if progress is not None:
                            progress(payload)
                        continue
                    in_flight = False
                    if kind == "ok":
                        return payload
                    raise self._raised(kind, payload, rest[0] if rest else "", model, stage)
                if self._proc.poll() is not None:
                    raise self._crashed(model, stage)
                if deadline is not None and time.monotonic() >= deadline:
                    self.close(kill=True)
                    raise ResourceLimitError(f"{model}: TensorFlow did not finish within {timeout:.0f} s "
                                             f"({TIMEOUT_ENV}) while {stage}")
        except BaseException:
            if in_flight and self._proc is not None:
                self.close(kill=True)  # Ctrl-C / SIGTERM while it works: do not leave it running
            raise

    def _crashed(self, model: str, stage: str) -> InverterError:
        code = self._proc.poll() if self._proc is not None else None
        self.close()
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            mem = memory_limit()
            hint = (f"; if it ran out of memory, the cap is {_fmt_bytes(mem)} ({MEMORY_ENV})"
                    if mem is not None and -code in (signal.SIGABRT, signal.SIGKILL, signal.SIGSEGV) else "")
            onednn = ("; TF_ENABLE_ONEDNN_OPTS=0 turns TensorFlow's oneDNN graph rewrites off, which may avoid it"
                      if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0" else "")
            return TensorFlowCrashError(f"{model}: TensorFlow crashed ({sig}) while {_gerund(stage)}{hint}{onednn}")
        return TensorFlowCrashError(f"{model}: the TensorFlow child process exited unexpectedly (code {code}) "
                                    f"while {_gerund(stage)}")

    def _raised(self, kind: str, payload: Any, tb: str, model: str, stage: str) -> BaseException:
        if kind == "memory":
            mem = memory_limit()
            cap = f" (cap {_fmt_bytes(mem)}, {MEMORY_ENV})" if mem is not None else ""
            return ResourceLimitError(f"{model}: TensorFlow ran out of memory{cap} while {_gerund(stage)}: "
                                      f"{str(payload).splitlines()[0][:300] if str(payload) else ''}")
        if isinstance(payload, BaseException):
            if not isinstance(payload, InverterError) and tb and hasattr(payload, "add_note"):
                payload.add_note("in the TensorFlow child process:\n" + tb)
            return payload
        return RuntimeError(f"{payload}\nin the TensorFlow child process:\n{tb}")

    def close(self, kill: bool = False) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and proc.poll() is None:
            if kill:
                proc.terminate()
                if not _wait(proc, 3):
                    proc.kill()
            else:
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
            if not _wait(proc, 10):
                proc.kill()
                _wait(proc, 3)
        if conn is not None:
            conn.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _gerund(stage: str) -> str:
    return stage[:1].lower() + stage[1:] if stage else "starting"


def run_isolated(func: Callable[..., Any], kwargs: Mapping[str, Any], *, model: str, what: str = "",
                 progress: Callable[[str], None] | None = None) -> Any:
    """``func(**kwargs)`` in a fresh child process (see the module docstring); ``func`` must be a
    module-level function. Its progress messages (:func:`progress`) reach ``progress`` here."""
    global _progress_sink
    if os.environ.get(IN_PROCESS_ENV) == "1":
        previous, _progress_sink = _progress_sink, progress
        try:
            return func(**kwargs)
        finally:
            _progress_sink = previous
    if _reused is not None:
        return _reused_worker().call(func, kwargs, model=model, what=what, progress=progress)
    with Worker() as worker:
        return worker.call(func, kwargs, model=model, what=what, progress=progress)


#: Environment variables a child reads at its start: a reused child must have been started with the same.
_SETTING_PREFIXES = ("TF_", "TFLITE_INVERTER_", "TMPDIR", "OMP_")


def _setting() -> tuple[Any, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_SETTING_PREFIXES)))
    return (os.getcwd(), tuple(sys.path), env)


def _reused_worker(keep: int = 2) -> Worker:
    """The kept child for the current setting (started on first use); at most ``keep`` stay open."""
    assert _reused is not None
    key = _setting()
    worker = _reused.pop(key, None) or Worker()
    _reused[key] = worker  # most recently used last
    while len(_reused) > keep:
        _reused.pop(next(iter(_reused))).close()
    return worker


@contextmanager
def reuse_workers() -> Iterator[None]:
    """Within the block, :func:`run_isolated` reuses one TensorFlow child per setting (see the module
    docstring); a call that crashes the child still raises its named error, and the next call starts
    a fresh one. Nested use keeps the outer block's children."""
    global _reused
    if _reused is not None:
        yield
        return
    _reused = {}
    try:
        yield
    finally:
        workers, _reused = _reused, None
        for worker in workers.values():
            worker.close()


if __name__ == "__main__":  # the child: run the loop of the importable module, whose globals the work sees
    from tflite_inverter import isolation

    isolation._child_main(int(sys.argv[1]))
