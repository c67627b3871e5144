"""A real `criu dump`, converted by `crfs convert` and restarted by crfs.ko, in the kmod
qemu guest (criu cannot dump on every host kernel; crfs.ko is never loaded on the host).

One guest boot for this module: tests/criu_guest_checks.py runs there and reports in JSON;
the tests read the report. Skipped without qemu, Debian's kernel or criu (fails in CI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_kmod_guest import _in_ci, _kernel_installed

REPO = Path(__file__).resolve().parent.parent
GUEST_TIMEOUT = int(os.environ.get("CRFS_GUEST_TIMEOUT", 600))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not (shutil.which("qemu-system-x86_64") and _kernel_installed() and
            shutil.which("criu")):
        reason = "qemu, Debian's *-amd64 kernel + headers or criu is not installed"
        if _in_ci():
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("criu-guest")
    build = work / "kmod"
    build.mkdir()
    for name in os.listdir(REPO / "kmod"):
        if name.endswith((".c", ".h")) or name in ("Kbuild", "Makefile"):
            shutil.copy(REPO / "kmod" / name, build / name)
    make = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True)
    assert make.returncode == 0, make.stdout + make.stderr
    exe = work / "dirty_heap"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(REPO / "bench" / "dirty_heap.c")],
                   check=True)
    results = work / "results.json"
    cmd = ["bash", str(REPO / "kmod" / "harness" / "run-in-guest"), "-q", "-t",
           str(GUEST_TIMEOUT), "-w", str(work), "-e", f"PYTHONPATH={REPO}", "-C", str(REPO),
           "--", sys.executable, str(REPO / "tests" / "criu_guest_checks.py"),
           str(build / "crfs.ko"), str(build / "crfs-restart"), str(exe), str(results)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=GUEST_TIMEOUT + 30)
    assert results.exists(), f"guest status {run.returncode}:\n{run.stdout[-3000:]}\n" \
                             f"{run.stderr[-3000:]}"
    found = json.loads(results.read_text())
    found["guest_rc"] = run.returncode
    return found


def test_guest_run_is_clean(report):
    assert report["guest_rc"] == 0, report
    assert report["insmod"] == 0 and report["criu_check"] == 0


def test_criu_dumps_and_crfs_reads_the_dump(report):
    assert report["dump"]["rc"] == 0, report["dump"]
    assert report["info"]["rc"] == 0, report["info"]
    assert "format: criu v1.1 x86_64" in report["info"]["stdout"]
    assert f"pid {report['pid']} tgid {report['pid']}" in report["info"]["stdout"]


def test_converted_dump_restarts_and_goes_on(report):
    assert report["convert"]["rc"] == 0, report["convert"]
    assert report["verify"]["rc"] == 0, report["verify"]
    assert report["restart"]["errno"] == 0, report["restart"]
    last = int(report["before"][-1][1])
    after = report["after"]
    assert after, report
    # The next tick after the dump's last one, by the same pid, with every heap page
    # re-read and right; then more ticks.
    assert [int(t[1]) for t in after[:5]] == list(range(last + 1, last + 6)), after
    assert all(t[2] == f"pid={report['pid']}" and t[3] == "heap=ok" for t in after), after
