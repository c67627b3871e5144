"""kmod/harness/run-in-guest itself: exit statuses for kernel problems, timeouts, cleanup.

Each test is one guest boot (~4-8 s under TCG). Kernel problems are produced without a
module: a line written to /dev/kmsg lands in dmesg like a kernel message, and
/proc/sysrq-trigger's "c" is a real kernel crash. Skipped like tests/test_kmod_guest.py.
"""

import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "kmod" / "harness"


def _ready():
    kernels = [p for p in glob.glob("/lib/modules/*-amd64/build/Makefile")
               if os.path.exists(f"/boot/vmlinuz-{p.split('/')[3]}")]
    return bool(shutil.which("qemu-system-x86_64") and kernels)


@pytest.fixture(autouse=True)
def _harness_installed():
    if not _ready():
        reason = "qemu or Debian's *-amd64 kernel is not installed (run kmod/harness/setup)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)


def run(*args, timeout=120):
    """(CompletedProcess, the control dir the harness kept or None)."""
    proc = subprocess.run(["bash", str(HARNESS / "run-in-guest"), *args], capture_output=True,
                          text=True, timeout=timeout + 30)
    kept = re.search(r"control dir kept: (/tmp/crfs-kh\.\w+)", proc.stderr)
    return proc, kept and kept.group(1)


def _forget(kept):
    if kept:
        shutil.rmtree(kept, ignore_errors=True)


def test_status_output_and_quoting(tmp_path):
    """The command's status comes back; arguments with spaces and quotes arrive intact;
    -w writes through to the host; the command's own output never counts as a kernel
    message; the control dir is removed."""
    out = tmp_path / "out"
    out.mkdir()
    arg = "it's a \"quoted\" $HOME arg"
    proc, kept = run("-q", "-t", "120", "-w", str(out), "--", "bash", "-c",
                     'printf "%s|%s" "$1" "$CRFS_KH_GUEST" > "$2/seen"; uname -r; '
                     'echo "WARNING: BUG: Oops (just output)"; exit 7', "-",
                     arg, str(out))
    assert proc.returncode == 7, proc.stderr
    assert (out / "seen").read_text() == f"{arg}|1"
    assert "-amd64" in proc.stdout
    assert kept is None, proc.stderr


def test_warning_in_dmesg_fails_with_122():
    proc, kept = run("-q", "-t", "120", "--", "sh", "-c",
                     "echo 'WARNING: CPU: 0 PID: 1 at crfs-harness-selftest' > /dev/kmsg")
    assert proc.returncode == 122, proc.stderr
    assert "command status 0" in proc.stderr
    assert kept and os.path.exists(os.path.join(kept, "dmesg.txt"))   # kept for inspection
    _forget(kept)


def test_oops_in_dmesg_fails_with_121():
    proc, kept = run("-q", "-t", "120", "--", "sh", "-c",
                     "echo 'BUG: unable to handle page fault (crfs-harness-selftest)' "
                     "> /dev/kmsg; exit 3")
    assert proc.returncode == 121, proc.stderr
    assert "command status 3" in proc.stderr
    _forget(kept)


def test_kernel_panic_fails_with_123():
    proc, kept = run("-q", "-t", "120", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert proc.returncode == 123, proc.stderr
    _forget(kept)


def test_timeout_fails_with_124():
    t0 = time.monotonic()
    proc, kept = run("-q", "-t", "3", "--", "sleep", "600", timeout=3)
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - t0 < 30
    _forget(kept)


def test_usage_errors_exit_2():
    proc, _ = run("-t", "soon", "--", "true")
    assert proc.returncode == 2
    assert "-t needs seconds" in proc.stderr
    proc, _ = run("-w", "/no/such/dir", "--", "true")
    assert proc.returncode == 2
