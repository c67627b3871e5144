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
# criu/ holds fuzz_criu.py's inputs: edits of the committed CRIU dumps' members
FORMATS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "criu")


def test_every_format_has_a_corpus():
    assert set(FORMATS) == set(harness.registry.FORMATS)
    assert any((CORPUS / "criu").iterdir())


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


def test_criu_corpus_gives_only_format_errors():
    """fuzz_criu.py's corpus through its per-input function (the edit applied to a working
    copy of a committed dump, which is indexed and walked): FormatError is the only
    complaint, and the edits both break dumps and leave some loading."""
    import sys
    sys.path.insert(0, str(FUZZ))
    try:
        spec = importlib.util.spec_from_file_location("fuzz_criu", FUZZ / "fuzz_criu.py")
        fuzz_criu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fuzz_criu)
    finally:
        sys.path.remove(str(FUZZ))
    work = fuzz_criu.Workspace()
    outcomes = {"loaded": 0, "refused": 0}
    try:
        for path in sorted((CORPUS / "criu").iterdir()):
            data = path.read_bytes()
            work.one_input(data)         # anything but FormatError fails the test
            outcomes["loaded" if work.last_loaded else "refused"] += 1
    finally:
        work.close()
    assert outcomes["loaded"] and outcomes["refused"], outcomes
