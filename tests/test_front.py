"""Root's compiled `crfs` (kmod/crfs-front.c) on the host, which has no crfs.ko: every
command goes to the Python CLI, found on PATH, with the same argv; the front never runs
itself or a copy of itself. What it does with the module is tested in the guest
(tests/guest_front.py, tests/test_kmod_guest.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crfs.formats.source import Source
from crfs.model import registry

REPO = Path(__file__).resolve().parent.parent
NO_CLI = "crfs: no Python crfs on PATH to run this command (pip install crfs)\n"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(os.path.exists("/dev/crfs"),
                                reason="this host has crfs.ko: the guest tests cover it")


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """kmod/crfs-front built as kmod/Makefile builds it."""
    out = tmp_path_factory.mktemp("front") / "crfs-front"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-pthread",
                    "-o", str(out), str(REPO / "kmod" / "crfs-front.c")], check=True)
    return out


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    """A directory holding `crfs`, a script running this tree's CLI."""
    path = tmp_path_factory.mktemp("cli")
    script = path / "crfs"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m crfs "$@"\n')
    script.chmod(0o755)
    return path


def run(front, argv, path):
    return subprocess.run([str(front), *argv], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, timeout=120)


def status_of(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    return fields["State"].split()[0], int(fields["TracerPid"])


@pytest.fixture
def counter(build_c):
    """ckpt_counter (tests/c), running; its pid."""
    proc = subprocess.Popen([build_c("ckpt_counter", 64)], stdout=subprocess.PIPE)
    proc.stdout.readline()
    yield proc.pid
    proc.kill()
    proc.wait()


def test_other_commands_run_the_python_cli(front, cli_dir):
    """`crfs --help` and `crfs checkpoint --help` are the CLI's, byte for byte."""
    for argv in (["--help"], ["checkpoint", "--help"]):
        by_front = run(front, argv, f"{cli_dir}:{SYSTEM_PATH}")
        by_cli = subprocess.run([str(cli_dir / "crfs"), *argv], capture_output=True,
                                text=True)
        assert by_front.returncode == by_cli.returncode == 0
        assert by_front.stdout == by_cli.stdout != ""


def test_checkpoint_without_the_module_is_the_clis(front, cli_dir, counter, tmp_path):
    """No /dev/crfs: the CLI checkpoints (its ptrace writer) and prints the path; with no
    CLI on PATH the front says so, exits 2, and the process was never touched."""
    image = tmp_path / "counter.ckpt"
    argv = ["checkpoint", str(counter), "-o", str(image)]
    alone = run(front, argv, SYSTEM_PATH)
    assert (alone.returncode, alone.stdout, alone.stderr) == (2, "", NO_CLI)
    assert not image.exists() and status_of(counter)[1] == 0
    done = run(front, argv, f"{cli_dir}:{SYSTEM_PATH}")
    assert (done.returncode, done.stdout) == (0, f"{image}\n"), done.stderr
    with Source.open(str(image)) as source:
        assert registry.detect(source) == "ckpt"
    assert status_of(counter) in (("R", 0), ("S", 0))


def test_errors_are_the_clis(front, cli_dir, tmp_path):
    """A pid that is no process: the CLI's message and status."""
    argv = ["checkpoint", "999999999", "-o", str(tmp_path / "x.ckpt")]
    by_front = run(front, argv, f"{cli_dir}:{SYSTEM_PATH}")
    by_cli = subprocess.run([str(cli_dir / "crfs"), *argv], capture_output=True, text=True)
    assert (by_front.returncode, by_front.stderr) == (by_cli.returncode, by_cli.stderr)
    assert by_front.returncode == 1 and "no process with pid 999999999" in by_front.stderr


def test_the_front_never_runs_itself(front, cli_dir, tmp_path):
    """A link to the front and a copy of it named crfs, earlier on PATH than the CLI,
    are passed over; with no CLI after them the front exits 2 instead of looping."""
    link_dir, copy_dir = tmp_path / "link", tmp_path / "copy"
    link_dir.mkdir()
    copy_dir.mkdir()
    (link_dir / "crfs").symlink_to(front)
    shutil.copy(front, copy_dir / "crfs")
    through = run(link_dir / "crfs", ["--help"], f"{link_dir}:{copy_dir}:{cli_dir}")
    assert through.returncode == 0 and through.stdout.startswith("usage: crfs")
    stuck = run(link_dir / "crfs", ["--help"], f"{link_dir}:{copy_dir}:{SYSTEM_PATH}")
    assert (stuck.returncode, stuck.stdout, stuck.stderr) == (2, "", NO_CLI)
