"""crfs/kernel.py and the restart/ status mapping, on the host (no module needed).

The module's real answers are checked in the guest (tests/test_kmod_guest.py); here the
restarter child is pointed at devices that are not /dev/crfs, and the errno -> status
mapping of crfs/fs/restart.py is checked for every errno the ABI documents.
"""

import ctypes
import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crfs import kernel
from crfs.errors import FsError
from crfs.formats import ckpt as fmt
from crfs.fs import restart
from crfs.model import registry
from crfs.model.synth import synthetic_image

KMOD = Path(__file__).resolve().parent.parent / "kmod"


@pytest.fixture(scope="module")
def restarter(tmp_path_factory):
    """kmod/crfs-restart built static, as `make -C kmod` builds it."""
    exe = tmp_path_factory.mktemp("restarter") / "crfs-restart"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", str(exe),
                    str(KMOD / "crfs-restart.c")], check=True, capture_output=True, text=True)
    return str(exe)


@pytest.fixture
def fake_restarter(tmp_path):
    """A stand-in that behaves like a successful restore: closes the report fd (as the
    kernel does), prints, exits 3."""
    script = tmp_path / "fake-restart"
    script.write_text(f"#!{sys.executable}\nimport os, sys\nos.close(int(sys.argv[4]))\n"
                      "print('restored', sys.argv[5])\nsys.exit(3)\n")
    script.chmod(0o755)
    return str(script)


def test_args_struct_is_the_c_size():
    assert ctypes.sizeof(kernel.ImageArgs) == 120
    assert kernel.CRFS_IOC_CHECK != kernel.CRFS_IOC_RESTART


def test_restart_files_args_keep_restart_compatible():
    """RESTART_FILES is a new number with its own 136-byte struct, which begins with
    RESTART's: modules and restarters of ABI 1 keep working with each other."""
    assert ctypes.sizeof(kernel.RestartArgs) == 136
    assert kernel.RestartArgs.image.offset == 0
    assert kernel.CRFS_IOC_RESTART_FILES not in (kernel.CRFS_IOC_CHECK, kernel.CRFS_IOC_RESTART,
                                                 kernel.CRFS_IOC_CHECKPOINT)
    assert kernel.CRFS_ABI_VERSION == 1


def test_child_without_device(tmp_path, restarter):
    image = tmp_path / "img"
    image.write_bytes(b"x")
    outcome = kernel.restart_in_child(str(image), device=str(tmp_path / "no-such-device"),
                                      restarter=restarter)
    assert (outcome.errno, outcome.stage) == (errno.ENOENT, "open-device")
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV
    assert "state: failed" in status and "kernel module is not loaded" in status


def test_child_with_a_device_that_is_not_crfs(tmp_path, restarter):
    image = tmp_path / "img"
    image.write_bytes(b"x")
    outcome = kernel.restart_in_child(str(image), device="/dev/null", restarter=restarter)
    assert (outcome.errno, outcome.stage) == (errno.ENOTTY, "version")
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV
    assert "/dev/crfs" in status


def _map(code, **kw):
    return restart._kernel_outcome("p.img", kernel.Outcome(code, **kw))


def test_restarter_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CRFS_RESTARTER", str(tmp_path / "nothing-here"))
    outcome = kernel.restart_in_child(str(tmp_path / "img"))
    assert (outcome.errno, outcome.stage) == (errno.ENOENT, "restarter")
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV and "state: failed" in status


@pytest.fixture
def fake_relay(tmp_path):
    """A stand-in for a restore with the image's pid: crfs-restart's relay writes the
    "restored" report naming the program's pid (4242), prints, and ends as it ends (3)."""
    script = tmp_path / "fake-relay"
    script.write_text(f"#!{sys.executable}\nimport os, struct, sys\n"
                      "fd = int(sys.argv[4])\n"
                      "os.write(fd, struct.pack('<iQI16s96s', 0, 2**64 - 1, 0, b'restored', "
                      "b'pid 4242'))\n"
                      "os.close(fd)\nprint('restored', sys.argv[5])\nsys.exit(3)\n")
    script.chmod(0o755)
    return str(script)


def test_restarter_relay_names_the_restored_pid(tmp_path, fake_relay):
    with open(tmp_path / "log", "wb") as log:
        outcome = kernel.restart_in_child("/the/image", restarter=fake_relay, stdout=log)
    assert (outcome.errno, outcome.pid, outcome.stage) == (0, 4242, "restored")
    assert outcome.process.wait(timeout=30) == 3
    assert (tmp_path / "log").read_text() == "restored /the/image\n"


def test_restarter_reports_its_output(tmp_path, fake_restarter):
    with open(tmp_path / "log", "wb") as log:
        outcome = kernel.restart_in_child("/the/image", restarter=fake_restarter, stdout=log)
    assert outcome.errno == 0 and outcome.pid == outcome.process.pid
    assert outcome.process.wait(timeout=30) == 3
    assert (tmp_path / "log").read_text() == "restored /the/image\n"
    assert kernel.describe_exit(3) == "exited 3"
    assert kernel.describe_exit(-9) == "killed by SIGKILL"
    assert kernel.describe_exit(None) == "running"


def test_valid_but_not_restorable():
    error, status = _map(errno.EOPNOTSUPP, reason="3 tasks: only single-task images are restored")
    assert error.errno == errno.EOPNOTSUPP
    assert "state: rejected" in status and "cannot restart it: 3 tasks" in status


def test_rejected_with_the_offending_record():
    error, status = _map(errno.EINVAL, reason="vma 0x1000 overlaps or precedes the one before",
                         offset=0x1234, record_type=fmt.CKPT_HDR["CKPT_HDR_VMA"])
    assert error.errno == errno.EINVAL
    assert ("error: the kernel module rejected the image: offset 0x1234: CKPT_HDR_VMA: "
            "vma 0x1000 overlaps") in status
    assert "state: rejected" in status


def test_wrong_arch_is_unsupported():
    error, status = _map(errno.ENOEXEC, reason="arch_id 1: only x86_64 images are restarted",
                         offset=0, record_type=1)
    assert error.errno == errno.EOPNOTSUPP
    assert "cannot restart it" in status


@pytest.mark.parametrize("code", [errno.EFBIG, errno.ENOMEM, errno.EIO, errno.ETIMEDOUT])
def test_other_errors_pass_through(code):
    error, status = _map(code)
    assert error.errno == code
    assert "state: failed" in status


def test_success():
    error, status = _map(0, pid=4321)
    assert error is None
    assert "state: running" in status and "pid: 4321" in status


@pytest.mark.parametrize("stand_in", ["fake_restarter", "fake_relay"])
def test_restart_box_status_and_log(tmp_path, monkeypatch, request, stand_in):
    """The daemon's side without a module: a restore that "succeeds" gives close() == 0,
    then a thread records the exit, with the program's pid (the relay's report names it);
    restart/<name>.log has the output."""
    monkeypatch.setattr(kernel, "DEVICE", "/dev/null")     # "the module is loaded"
    monkeypatch.setenv("CRFS_RESTARTER", request.getfixturevalue(stand_in))
    box = restart.RestartBox(str(tmp_path), os.getuid())
    upload = box.create("p.img", os.getuid())
    out = io.BytesIO()
    registry.dump(synthetic_image(heap_pages=2), out, "ckpt")
    upload.write(0, out.getvalue())
    upload.close()          # no FsError: restored
    deadline = time.monotonic() + 60      # a bound for a loaded machine, not a timing check
    while True:
        status = box.child("p.img.status").read(0, 4096).decode()
        if "exited" in status or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert "state: exited 3" in status and "pid: " in status
    if stand_in == "fake_relay":
        assert "pid: 4242\n" in status
    assert "p.img.log" in box.names()
    assert box.child("p.img.log").read(0, 4096).startswith(b"restored ")
    upload.release()


# --------------------------------------------------------------------------- the restarter's files
#
# The daemon runs crfs-restart with its own privileges: a restarter someone else could
# replace (found on PATH, or in a user-writable source tree) is refused, ENODEV with why.


def _restarter_in(directory, mode=0o755):
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "crfs-restart"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(mode)
    return exe


def _refused(outcome, words):
    assert (outcome.errno, outcome.stage) == (errno.EPERM, "restarter"), outcome
    assert words in outcome.reason, outcome
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV
    assert "state: failed" in status and words in status, status


def test_restarter_writable_by_others_is_refused(tmp_path):
    exe = _restarter_in(tmp_path / "bin", 0o757)
    _refused(kernel.restart_in_child("/the/image", restarter=str(exe)),
             f"restarter {exe} is writable by group or others")


def test_restarter_in_a_group_writable_directory_is_refused(tmp_path):
    exe = _restarter_in(tmp_path / "bin")
    (tmp_path / "bin").chmod(0o775)
    _refused(kernel.restart_in_child("/the/image", restarter=str(exe)),
             f"directory {tmp_path / 'bin'} is writable by group or others")


def test_restarter_through_a_symlink_checks_both_paths(tmp_path):
    """A link in a world-writable (not sticky) directory to a sound restarter: the link
    could be swapped, so it is refused too."""
    exe = _restarter_in(tmp_path / "bin")
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    (tmp_path / "open" / "crfs-restart").symlink_to(exe)
    _refused(kernel.restart_in_child("/the/image",
                                     restarter=str(tmp_path / "open" / "crfs-restart")),
             f"directory {tmp_path / 'open'} is writable by group or others")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_restarter_owned_by_another_uid_is_refused(tmp_path):
    exe = _restarter_in(tmp_path / "bin")
    os.chown(exe, 65534, 65534)
    _refused(kernel.restart_in_child("/the/image", restarter=str(exe)),
             f"restarter {exe} is owned by uid 65534")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_restarter_in_a_directory_of_another_uid_is_refused(tmp_path):
    exe = _restarter_in(tmp_path / "bin")
    os.chown(tmp_path / "bin", 65534, 65534)
    _refused(kernel.restart_in_child("/the/image", restarter=str(exe)),
             f"directory {tmp_path / 'bin'} is owned by uid 65534")


def test_sound_restarter_is_accepted(tmp_path):
    """Owned by the daemon's uid (or root), writable by nobody else, in directories that
    are the same or sticky (/tmp): it is run."""
    exe = _restarter_in(tmp_path / "bin")
    assert kernel.unsafe_restarter(str(exe)) is None
    assert kernel.unsafe_restarter(str(tmp_path / "missing")) is None   # exec says ENOENT


def test_daemon_refuses_an_unsafe_restarter(tmp_path, monkeypatch, fake_restarter):
    """restart/ with $CRFS_RESTARTER pointing at a world-writable restarter: close(2) is
    ENODEV and the status says why, nothing is run."""
    os.chmod(fake_restarter, 0o777)
    monkeypatch.setattr(kernel, "DEVICE", "/dev/null")     # "the module is loaded"
    monkeypatch.setenv("CRFS_RESTARTER", fake_restarter)
    box = restart.RestartBox(str(tmp_path), os.getuid())
    upload = box.create("p.img", os.getuid())
    out = io.BytesIO()
    registry.dump(synthetic_image(heap_pages=2), out, "ckpt")
    upload.write(0, out.getvalue())
    with pytest.raises(FsError) as exc:
        upload.close()
    assert exc.value.errno == errno.ENODEV
    status = box.child("p.img.status").read(0, 4096).decode()
    assert "state: failed" in status and "writable by group or others" in status, status
    upload.release()
