"""A snapshot checkpoint reads the signal handlers from its copy-on-write child after the
program runs again (crfs/checkpoint/snapshot.py, read_handlers): the image must hold the
same signal state as a checkpoint that keeps the program stopped (--stop), and the program
must go on untouched."""

import os
import select
import signal
import subprocess

import pytest

from crfs.checkpoint import checkpoint
from crfs.model import registry

SA_SIGINFO, SA_ONSTACK, SA_RESTART = 0x4, 0x08000000, 0x10000000
SIGHUP_BIT = 1 << (signal.SIGHUP - 1)


def _line(proc, timeout=10):
    assert select.select([proc.stdout], [], [], timeout)[0], "no output"
    return proc.stdout.readline()


@pytest.fixture
def target(build_c, tmp_path):
    exe = build_c("sig_target", 64, "-pthread")
    proc = subprocess.Popen([str(exe), str(tmp_path), "thread"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert _line(proc).startswith("ready")
        assert _line(proc).startswith("tick")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _signals(path):
    image = registry.open_image(path)
    try:
        return [(t.pid, t.signals) for t in image.tasks]
    finally:
        image.close()


def test_snapshot_holds_the_handlers_a_stopped_checkpoint_does(target, tmp_path):
    snap_report, stop_report = {}, {}
    checkpoint(target.pid, tmp_path / "snap.ckpt", report=snap_report)
    checkpoint(target.pid, tmp_path / "stop.ckpt", report=stop_report, stop=True)
    assert (snap_report["mode"], stop_report["mode"]) == ("snapshot", "stop")
    snap, stop = _signals(tmp_path / "snap.ckpt"), _signals(tmp_path / "stop.ckpt")
    assert len(snap) == len(stop) == 2                  # both threads
    for (pid, got), (_, want) in zip(snap, stop):
        assert got.handlers is not None, f"thread {pid}: no handlers"
        assert got.handlers.actions == want.handlers.actions
        assert (got.blocked, got.altstack) == (want.blocked, want.altstack)
    actions = snap[0][1].handlers.actions
    term, usr1 = actions[signal.SIGTERM - 1], actions[signal.SIGUSR1 - 1]
    assert term.handler and usr1.handler and term.handler != usr1.handler
    assert term.flags & (SA_SIGINFO | SA_RESTART) == SA_SIGINFO | SA_RESTART
    assert usr1.flags & SA_ONSTACK and not term.flags & SA_ONSTACK
    assert term.mask == usr1.mask == SIGHUP_BIT
    assert actions[signal.SIGINT - 1].handler == 0      # SIG_DFL
    # The program runs on as before: its handler still runs, no child is left.
    os.kill(target.pid, signal.SIGUSR1)
    while True:
        line = _line(target)
        if line.startswith("usr1"):
            break
    assert "onstack=1" in line and "itimer=7" in line
    children = set()
    for tid in os.listdir(f"/proc/{target.pid}/task"):
        with open(f"/proc/{target.pid}/task/{tid}/children") as f:
            children |= set(f.read().split())
    assert not children
