"""What a snapshot checkpoint does outside the program's freeze (crfs/checkpoint/snapshot.py):
the signal handlers and the pagemap of private memory are read from the copy-on-write child
after the program runs again, and VmFlags (smaps) before it is stopped. The image must hold
what a checkpoint that keeps the program stopped (--stop) holds, and flags that changed
between the early read and the freeze must be caught."""

import os
import select
import signal
import subprocess

import pytest

import crfs.checkpoint.api as api
from crfs.checkpoint import checkpoint, procfs
from crfs.model import registry

SA_SIGINFO, SA_ONSTACK, SA_RESTART = 0x4, 0x08000000, 0x10000000
SIGHUP_BIT = 1 << (signal.SIGHUP - 1)


def _line(proc, timeout=10):
    assert select.select([proc.stdout], [], [], timeout)[0], "no output"
    return proc.stdout.readline()


@pytest.fixture
def target(build_c, tmp_path):
    exe = build_c("sig_target", 64, "-pthread")
    # SIGINT at its default whoever runs the tests: a shell without job control that
    # starts them in the background hands its children SIGINT ignored
    proc = subprocess.Popen([str(exe), str(tmp_path), "thread"], stdout=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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


def test_flags_changed_after_the_early_read_are_caught(build_c, tmp_path, monkeypatch):
    """The program's MADV_DONTFORK area as smaps showed it before the madvise (the early
    read is made stale on purpose): the child lacks that VMA, so the snapshot is taken again
    with every flag read while stopped, and the area's pages are in the image."""
    proc = subprocess.Popen([str(build_c("ckpt_nofork", 64))], stdout=subprocess.PIPE,
                            text=True)
    try:
        ready = {k: int(v, 16) for k, v in (i.split("=") for i in _line(proc).split()[1:])}
        lines = procfs.maps(proc.pid)
        stale = [line.replace(vm_flags=line.vm_flags & ~procfs.VM_DONTCOPY, dontfork=False)
                 if line.start == ready["dontfork"] else line for line in lines]
        assert stale != lines
        monkeypatch.setattr(api, "_early_maps", lambda pid: stale)
        attempts = []
        once = api._checkpoint_once
        monkeypatch.setattr(api, "_checkpoint_once",
                            lambda *a, **k: attempts.append(k.get("early", True)) or once(*a, **k))
        report = {}
        path = checkpoint(proc.pid, tmp_path / "nofork.ckpt", report=report)
        assert attempts == [True, False] and report["mode"] == "snapshot"
        image = registry.open_image(path)
        try:
            mm = image.tasks[0].mm
            vma = mm.vma_at(ready["dontfork"])
            assert vma.vm_flags & procfs.VM_DONTCOPY
            pages = ready["pages"]
            expected = b"".join(bytes([0x40 + i]) * 4096 for i in range(pages))
            assert mm.read(ready["dontfork"], pages * 4096) == expected
        finally:
            image.close()
        monkeypatch.undo()
        attempts.clear()
        report = {}
        checkpoint(proc.pid, tmp_path / "again.ckpt", report=report)     # flags unchanged:
        assert report["mode"] == "snapshot"                              # one attempt
    finally:
        proc.kill()
        proc.wait()
