"""Writing outputs: atomically, with the permissions the user's umask asks for, nothing overwritten
silently.

Every file or folder the tool produces is first written under a temporary name beside its final
place (same filesystem, so the final ``rename`` is atomic) and renamed only when complete. Temp
names start with ``.`` and end in ``.tmp`` (files) or start with ``.tflite-inverter-`` (folders).
``tempfile`` creates them 0600/0700; before publishing they get ``0666 & ~umask`` / ``0777 & ~umask``,
the modes an ordinary ``open``/``mkdir`` would have given. Also here: :func:`log`, how the library
passes progress messages to its caller's ``progress`` callback.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from .errors import OutputExistsError, UsageError


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(path: str) -> None:
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def check_output_file(path: str | None, force: bool) -> None:
    """A file output may be written: absent, or ``force``; never a folder."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; expected a file path")
    if os.path.exists(path) and not force:
        raise OutputExistsError(f"{path} exists; pass --force to replace it")


def check_output_dir(path: str, force: bool) -> None:
    """A folder output may be written: absent, an EMPTY folder, or ``force``; never a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{path} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path) and not force:
        raise OutputExistsError(f"{path} exists and is not empty; pass --force to replace it")


def _parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    return parent


def temp_file_for(path: str) -> str:
    """A new empty temp file beside ``path`` (``.NAME.XXXX.tmp``) to write the output into."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=_parent(path))
    os.close(fd)
    return tmp


def temp_dir_for(path: str) -> str:
    """A new empty temp folder beside ``path`` (``.tflite-inverter-XXXX``)."""
    return tempfile.mkdtemp(prefix=".tflite-inverter-", dir=_parent(path))


def publish_file(tmp: str, path: str) -> None:
    """Give ``tmp`` the umask's mode and rename it to ``path`` (atomic)."""
    _publish_mode(tmp)
    os.replace(tmp, path)


def publish_dir(tmp: str, path: str) -> None:
    """Move folder ``tmp`` into place as ``path``; an old ``path`` is removed only after the new one is there."""
    _publish_mode(tmp)
    if os.path.exists(path):
        old = path.rstrip("/") + f".old-{os.getpid()}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def remove_quietly(path: str | None) -> None:
    if not path:
        return
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            pass


def write_atomic(path: str, data: bytes) -> None:
    tmp = temp_file_for(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        publish_file(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def write_json_atomic(path: str, obj: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def log(progress: Callable[[str], None] | None, msg: str) -> None:
    """Pass ``msg`` to a progress callback, if there is one (the API's ``progress=`` argument)."""
    if progress is not None:
        progress(msg)
