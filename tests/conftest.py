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


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"corpus folder {CORPUS_DIR} is absent")
    return CORPUS_DIR
