"""crfs.checkpoint.api's paths without pathlib (the kernel path of `crfs checkpoint` does
not import it, issue #13): the same strings pathlib gives."""

from pathlib import Path, PurePosixPath

import pytest

from crfs.checkpoint import api

CASES = ["x.ckpt", "./x.ckpt", "a/b", "a/b/", "a//b", "a/./b", "a/../b", "/x", "//x",
         "///x", "/", "//", "///", ".", "", "./", "a/.", "/a/b/c.img", "..", "../x"]


@pytest.mark.parametrize("text", CASES)
def test_posix_path_is_pathlibs(text):
    expected = PurePosixPath(text)
    assert api.posix_path(text) == str(expected)
    assert api.posix_path(Path(text)) == str(expected)
    assert api.parent_dir(api.posix_path(text)) == str(expected.parent)
    assert api.join_path(api.posix_path(text), "n-1.ckpt") == str(expected / "n-1.ckpt")


def test_posix_path_refuses_bytes():
    with pytest.raises(TypeError):
        api.posix_path(b"x.ckpt")
