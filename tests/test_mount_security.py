"""Who may read and write what through a mount with allow_other (docs/security.md).

Root mounts and owns the store; user nobody (65534) is the other user. Every check is made
on a real mount, with the other user's commands run through setpriv.
"""

import errno
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mountfs import CRFS, Mount, errors_in_log, write_image

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")


def as_user(*command, uid=NOBODY, gid=NOBODY, groups=None, stdin=None):
    """Run `command` as another user; CompletedProcess (text)."""
    ids = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", *ids, "--",
                           *map(str, command)], capture_output=True, text=True, input=stdin,
                          timeout=60)


def python_as_user(script, **kwargs):
    return as_user(sys.executable, "-c", script, **kwargs)


def denied(result):
    return result.returncode != 0 and "Permission denied" in (result.stderr + result.stdout)


@pytest.fixture
def world():
    """A directory every user may walk through (pytest's tmp dirs are root's only)."""
    with tempfile.TemporaryDirectory(prefix="crfs-sec-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        yield tmp


@pytest.fixture
def shared(world):
    """A store (0755) mounted with allow_other; unmounted and its log checked at the end."""
    m = Mount(world)
    os.chmod(m.store, 0o755)
    yield m
    m.unmount()
    assert not errors_in_log(m.log_text()), m.log_text()


# --- 1. restart/ uploads belong to their writer ---------------------------------------

def test_another_user_cannot_take_over_an_upload(shared, world):
    write_image(world / "p.img", "ckpt", "x86_64")
    shared.mount("-o", "allow_other")
    target = shared / "restart" / "x.img"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)   # root's copy, still open
    try:
        os.write(fd, (world / "p.img").read_bytes()[:100])
        st = os.stat(target)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
        takeover = python_as_user(
            "import os\n"
            f"fd = os.open({str(target)!r}, os.O_RDWR)\n"
            "os.pwrite(fd, b'NOT ROOTS IMAGE', 0)\n"
            "os.close(fd)\n")
        assert denied(takeover), takeover
        for flags in ("os.O_RDONLY", "os.O_WRONLY | os.O_APPEND"):
            other = python_as_user(f"import os; os.open({str(target)!r}, {flags})")
            assert denied(other), (flags, other)
        assert denied(as_user("truncate", "-s", "0", target))
        # (Root's own upload is flushed, and rejected, whenever a child closes its copy
        # of the descriptor on exec: that is root's business. Its bytes are root's.)
        assert os.pread(fd, 100, 0) == (world / "p.img").read_bytes()[:100]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
