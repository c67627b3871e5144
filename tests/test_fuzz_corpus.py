"""The fuzzers' committed corpora (fuzz/corpus/<format>/) through the harness's per-input
function: each input indexes, walks, lists and verifies with FormatError as the only
complaint (one_input lets anything else escape). Needs no atheris."""

import importlib.util
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
CORPUS = FUZZ / "corpus"


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_formats", FUZZ / "fuzz_formats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness()
FORMATS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_every_format_has_a_corpus():
    assert set(FORMATS) == set(harness.registry.FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_corpus_gives_only_format_errors(fmt):
    inputs = sorted((CORPUS / fmt).iterdir())
    assert inputs
    loaded = 0
    for path in inputs:
        data = path.read_bytes()
        harness.one_input(data)          # anything but FormatError fails the test
        harness.one_input(data, fmt)     # as the fuzzer ran it
        try:
            harness.registry.load(harness.MemorySource(data))
            loaded += 1
        except harness.FormatError:
            pass
    assert loaded, f"no input of the {fmt} corpus loads: the walk went untested"
