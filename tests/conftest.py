"""Shared fixtures: the repository's sample models and the real third-party corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "models"
CORPUS_DIR = Path(os.environ.get("TFLITE_INVERTER_CORPUS", ROOT.parent / "shared" / "models"))


def corpus_files() -> list[Path]:
    """Every .tflite of ../shared/models (empty when the folder is absent)."""
    if not CORPUS_DIR.is_dir():
        return []
    return sorted(CORPUS_DIR.glob("*.tflite"))


def sample_files() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("*.tflite"))


@pytest.fixture(scope="session", autouse=True)
def _one_tensorflow_child_per_setting():
    """The API calls of the whole session reuse one TensorFlow child per setting (working folder and
    TF_/TFLITE_INVERTER_ environment; isolation.reuse_workers) instead of importing TensorFlow per
    call. test_isolation, which checks what a fresh child leaves behind, turns it off."""
    from tflite_inverter.isolation import reuse_workers

    with reuse_workers():
        yield


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"corpus folder {CORPUS_DIR} is absent")
    return CORPUS_DIR


def corpus_file(name: str) -> Path:
    """``../shared/models/NAME``; skips the test when the corpus (or that file) is absent."""
    path = CORPUS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
