"""`crfs restart IMAGE` and `crfs doctor` on this host (no crfs module: a host kernel that
cannot load modules). The restore itself needs the module: tests/test_kmod_guest.py runs
`crfs restart` in the guest; here stand-in restarters play the kernel's two answers."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from crfs import kernel
from crfs.formats import ckpt as fmt
from mountfs import CRFS, write_image


def crfs(*args, env=None):
    return subprocess.run(CRFS + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "p.ckpt"
    write_image(path, "ckpt", "x86_64", heap_pages=2)
    return path


def stand_in(tmp_path, body):
    """A restarter script: argv is [-d DEV, -r FD, (-N,) IMAGE]; it records its argv."""
    script = tmp_path / "stand-in"
    script.write_text(f"#!{sys.executable}\nimport os, struct, sys\n"
                      f"open({str(tmp_path / 'argv')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                      "fd = int(sys.argv[4])\n" + body)
    script.chmod(0o755)
    return {"CRFS_RESTARTER": str(script)}


def test_without_the_module_says_how_to_get_it(image):
    result = crfs("restart", image, "--device", "/nonexistent/crfs")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"crfs restart: {image}: not restarted: the crfs kernel "
                                    "module is not loaded (no /nonexistent/crfs)")
    assert "dkms add ./kmod" in result.stderr and "make -C kmod" in result.stderr


def test_unsound_and_unsupported_images_are_refused(tmp_path, image):
    half = tmp_path / "half.ckpt"
    half.write_bytes(image.read_bytes()[:3000])
    result = crfs("restart", half)
    assert result.returncode == 1
    assert f"{half}: not restarted: unsound image: records: " in result.stderr
    i386 = tmp_path / "p32.ckpt"
    write_image(i386, "ckpt", "i386")
    result = crfs("restart", i386)
    assert result.returncode == 1
    assert ("not restarted: cannot restart a linux-cr ckpt_hdr v21 i386 image: only "
            "linux-cr ckpt_hdr v21 x86_64 images can be restarted") in result.stderr


def test_refusal_names_record_and_offset(tmp_path, image):
    vma = fmt.CKPT_HDR["CKPT_HDR_VMA"]
    env = stand_in(tmp_path, "os.write(fd, struct.pack('<iQI16s96s', 22, 0x1234, "
                   f"{int(vma)}, b'restart', b'vma 0x1000 overlaps the one before'))\n"
                   "sys.exit(1)\n")
    result = crfs("restart", image, "--device", "/dev/null", env=env)
    assert result.returncode == 1
    assert result.stderr == (f"crfs restart: {image}: not restarted: the kernel module "
                             "rejected the image: record CKPT_HDR_VMA at offset 0x1234: "
                             "vma 0x1000 overlaps the one before\n")


def test_restored_pid_and_wait(tmp_path, image):
    env = stand_in(tmp_path, "os.close(fd)\nprint('program output')\nsys.exit(3)\n")
    result = crfs("restart", "-N", "--wait", image, "--device", "/dev/null", env=env)
    assert result.returncode == 3, result.stderr
    first, second = result.stderr.splitlines()
    assert first.startswith(f"crfs restart: {image}: restored pid ")
    pid = int(first.rsplit(" ", 1)[1])
    assert second == f"crfs restart: {image}: pid {pid} exited 3"
    assert result.stdout == "program output\n"
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:3] == ["-d", "/dev/null", "-r"] and argv[4:] == ["-N", str(image)]


def test_no_wait_and_log(tmp_path, image):
    env = stand_in(tmp_path, "os.close(fd)\nprint('to the log')\n")
    log = tmp_path / "program.log"
    result = crfs("restart", image, "--device", "/dev/null", "--log", log, env=env)
    assert result.returncode == 0 and "restored pid" in result.stderr
    assert result.stdout == ""
    assert (tmp_path / "argv").read_text().split()[4:] == [str(image)]   # no -N
    deadline = time.monotonic() + 60   # the stand-in runs on by itself: a bound, not a check
    while not log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.read_text() == "to the log\n"


def test_installed_restarter_is_looked_at_first(monkeypatch, tmp_path):
    monkeypatch.delenv("CRFS_RESTARTER", raising=False)
    monkeypatch.setattr(kernel, "INSTALLED_RESTARTER", "/bin/true")
    assert kernel.find_restarter() == "/bin/true"
    assert kernel.unsafe_restarter("/bin/true") is None


# ------------------------------------------------------------------------ doctor

def test_doctor_on_this_host():
    result = crfs("doctor")
    lines = result.stdout.splitlines()
    names = [line[8:].split(":")[0] for line in lines if not line.startswith(" ")]
    assert names == ["fuse", "module", "restarter", "front", "ptrace", "soft-dirty",
                     "userfaultfd"]
    fuse = next(line for line in lines if line[8:].startswith("fuse:"))
    assert fuse.startswith("ok") and "/dev/fuse" in fuse       # the tests mount with it
    if not os.path.exists(kernel.DEVICE):
        module = lines.index(next(line for line in lines if line[8:].startswith("module:")))
        assert lines[module].startswith("MISSING module: no /dev/crfs")
        assert lines[module + 1].startswith("        fix: ") and "modprobe crfs" in \
            lines[module + 1]
        assert result.returncode == 1
    if not os.path.exists("/proc/modules"):
        assert "cannot load modules" in result.stdout


def test_doctor_front(tmp_path, monkeypatch):
    """The front check: absent, a script in its place, the binary (first on PATH or not)."""
    from crfs import doctor
    missing = doctor.check_front(str(tmp_path / "crfs"))
    assert (missing.ok, missing.level) == (False, doctor.WANT)
    assert missing.detail.endswith(f"no {tmp_path / 'crfs'}") and "kmod/install" in missing.fix
    script = tmp_path / "crfs"
    script.write_text("#!/bin/sh\n")
    assert not doctor.check_front(str(script)).ok
    binary = tmp_path / "bin" / "crfs"
    binary.parent.mkdir()
    shutil.copy("/bin/true", binary)
    monkeypatch.setenv("PATH", f"{binary.parent}:{os.environ['PATH']}")
    first = doctor.check_front(str(binary))
    monkeypatch.setenv("PATH", "/nonexistent")
    elsewhere = doctor.check_front(str(binary))
    assert first.ok and first.detail.endswith(f"{binary}, first on PATH")
    assert elsewhere.ok and "`crfs` on this PATH is none" in elsewhere.detail


def test_doctor_device_that_is_not_crfs():
    result = crfs("doctor", "--device", "/dev/null")
    assert "MISSING module: /dev/null: " in result.stdout


def test_doctor_refuses_a_writable_restarter(tmp_path):
    script = tmp_path / "crfs-restart"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o777)
    result = crfs("doctor", env={"CRFS_RESTARTER": str(script)})
    assert f"MISSING restarter: {script}: the daemon refuses it: " in result.stdout
    assert "writable by group or others" in result.stdout


def test_doctor_json_keys():
    from test_json import check
    result = crfs("doctor", "--json")
    doc = json.loads(result.stdout)
    printed, keys = check("doctor", doc)
    assert printed == set(keys)
    assert result.returncode == (0 if doc["ready"] else 1)


def test_fds_handed_in_and_stdio_replaced(tmp_path, image):
    """--inherit-fd 7=FD passes our FD and `-i 7=FD` to the restarter, which gets that fd
    open; --stdio replace passes -R."""
    env = stand_in(tmp_path, "os.close(fd)\nfd_in = int(sys.argv[sys.argv.index('-i') + 1]"
                   ".split('=')[1])\nprint(os.read(fd_in, 100).decode())\n")
    handed = tmp_path / "handed"
    handed.write_text("handed in")
    with open(handed) as f:
        result = subprocess.run(CRFS + ["restart", "--wait", "-i", f"7={f.fileno()}",
                                        "--stdio", "replace", str(image), "--device",
                                        "/dev/null"], capture_output=True, text=True,
                                timeout=120, env={**os.environ, **env},
                                pass_fds=(f.fileno(),))
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().split()
    fd = argv[argv.index("-i") + 1].split("=")[1]
    assert argv[4:] == ["-i", f"7={fd}", "-R", str(image)]
    assert result.stdout == "handed in\n"


def test_lazy_is_passed_to_the_restarter(tmp_path, image):
    """--lazy asks crfs-restart for a lazy restart (its --lazy)."""
    env = stand_in(tmp_path, "os.close(fd)\n")
    result = crfs("restart", "--wait", "--lazy", image, "--device", "/dev/null", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv").read_text().split()[4:] == ["--lazy", str(image)]


def test_inherit_fd_must_be_open(image):
    result = crfs("restart", "-i", "5=97", image)
    assert result.returncode == 2
    assert "'5=97': fd 97 is not open here" in result.stderr
    result = crfs("restart", "-i", "five", image)
    assert "expected IMAGEFD=FD" in result.stderr
