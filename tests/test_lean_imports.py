"""What `crfs checkpoint` imports (issue #13: its start-up is most of a small checkpoint's
time in the TCG guest). The command runs in a fresh interpreter against a real process;
the modules it imported are what sys.modules holds when it is done."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from crfs.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as exc:      # --help
    status = exc.code
print(json.dumps([status, sorted(sys.modules)]))
"""

# The userspace writer's: the model, construct and the capture of a live process.
WRITER = ("construct", "crfs.model.image", "crfs.formats.ckpt", "crfs.checkpoint.capture",
          "crfs.checkpoint.snapshot", "crfs.checkpoint.signals")


# What the kernel path leaves out of the start-up: pathlib (ntpath, urllib.parse,
# ipaddress), shutil (bz2, lzma, zlib: argparse's terminal width), tempfile, dataclasses.
HEAVY = ("pathlib", "ntpath", "urllib.parse", "ipaddress", "shutil", "bz2", "lzma",
         "tempfile", "dataclasses", "inspect", "crfs.formats.x86")


def modules_after(*args, flags=()):
    """(exit status, modules imported) of `crfs ARGS` run in a fresh interpreter."""
    run = subprocess.run([sys.executable, *flags, "-c", RUN, str(ROOT), *map(str, args)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    status, modules = json.loads(run.stdout.splitlines()[-1])
    return status, set(modules)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def test_checkpoint_via_kernel_imports_no_model(sleeper, tmp_path):
    """--via kernel asks /dev/crfs to write the image: none of the writer's modules (on a
    host without the module it fails there, with what it has imported by then)."""
    status, modules = modules_after("checkpoint", sleeper.pid, "--via", "kernel",
                                    "-o", tmp_path / "x.ckpt")
    assert "crfs.checkpoint.via_kernel" in modules and "crfs.checkpoint.freezer" in modules
    assert not modules & set(WRITER), sorted(modules & set(WRITER))
    assert not any(m.startswith(("crfs.fs", "pyfuse3", "trio")) for m in modules)
    if not Path("/dev/crfs").exists():
        assert status == 1


def test_checkpoint_via_kernel_start_up_is_lean(sleeper, tmp_path):
    """Without site (whose .pth files on this machine import pathlib and more), the kernel
    path imports none of HEAVY."""
    status, modules = modules_after("checkpoint", sleeper.pid, "--via", "kernel",
                                    "-o", tmp_path / "x.ckpt", flags=("-S",))
    assert "crfs.checkpoint.via_kernel" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_checkpoint_help_imports_no_model():
    status, modules = modules_after("checkpoint", "--help")
    assert status == 0
    assert not modules & set(WRITER), sorted(modules & set(WRITER))


def test_checkpoint_via_ptrace_imports_the_writer(sleeper, tmp_path):
    """The userspace writer imports what it uses, and writes a sound image."""
    out = tmp_path / "x.ckpt"
    status, modules = modules_after("checkpoint", sleeper.pid, "--via", "ptrace", "-q",
                                    "-o", out)
    assert status == 0 and out.stat().st_size > 0
    assert {"crfs.checkpoint.capture", "crfs.model.ckpt", "construct"} <= modules
    assert not any(m.startswith(("crfs.fs", "pyfuse3", "trio")) for m in modules)


QUICK = """
import atexit, sys
sys.path.insert(0, sys.argv[1])
atexit.register(lambda: print("finalized"))
from crfs.cli import console
sys.argv[1:] = sys.argv[2:]
sys.exit(console())
"""


def test_checkpoint_ends_without_finalization(sleeper, tmp_path):
    """console() (the `crfs` script, python -m crfs) ends `crfs checkpoint` with os._exit
    once stdout is flushed: its path printed, its status kept, no atexit handler run."""
    out = tmp_path / "x.ckpt"
    run = subprocess.run([sys.executable, "-c", QUICK, str(ROOT), "checkpoint",
                          str(sleeper.pid), "--via", "ptrace", "-q", "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{out}\n" and out.stat().st_size > 0
    failed = subprocess.run([sys.executable, "-c", QUICK, str(ROOT), "checkpoint",
                             "999999999", "--via", "ptrace", "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode == 1 and "finalized" not in failed.stdout


def test_other_commands_end_as_usual():
    run = subprocess.run([sys.executable, "-c", QUICK, str(ROOT), "demo", "--help"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("finalized")
    run = subprocess.run([sys.executable, "-c", QUICK, str(ROOT), "info", "/nonexistent"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and run.stdout == "finalized\n"
