"""The corpus tests of test_corpus.py with TensorFlow's oneDNN graph rewrites OFF in the child that
runs the rebuilt models (``TF_ENABLE_ONEDNN_OPTS=0``); test_corpus.py runs them ON."""

from __future__ import annotations

from .test_corpus import (  # noqa: F401 - pytest collects the imported tests and fixture here
    rows,
    test_compiled_npu_blobs_and_placeholders_are_refused_by_name,
    test_every_unconverted_file_says_why,
    test_files_that_matched_still_match,
    test_no_corpus_file_crashes_the_tool,
    test_quantized_matches_meet_the_lsb_criterion,
)

ONEDNN = "0"
