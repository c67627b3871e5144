"""Snapshot checkpoints (the default; crfs/checkpoint/snapshot.py) of real processes.

tests/c/ckpt_rewrite.c rewrites a pattern in a loop while it is checkpointed: the image must
hold memory of one instant (one generation, up to the page its progress word names), which
it would not if pages were read while the program ran. Afterwards the program must show no
trace: no child, no zombie, no SIGCHLD, no new descriptor.
"""

import os
import re
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crfs.checkpoint import checkpoint
from crfs.formats.source import Source
from crfs.model import registry
from crfs.model.verify import verify

ROOT = Path(__file__).resolve().parents[1]
PAGE = 4096
WORDS = PAGE // 8


class Rewriter:
    def __init__(self, exe, threads=1, pages=256):
        self.proc = subprocess.Popen([str(exe), str(threads), str(pages)],
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        fd, text = self.proc.stdout.fileno(), ""
        while "\n" not in text:
            assert select.select([fd], [], [], 10)[0], "not ready"
            text += os.read(fd, 4096).decode()
        self.ready = {k: int(v, 16) for k, v in (item.split("=") for item in text.split()[1:])}
        while min(g for g, _ in self.progress()) < 3:   # every thread: every page written
            time.sleep(0.01)

    def read(self, address, size):
        with open(f"/proc/{self.pid}/mem", "rb") as mem:
            mem.seek(address)
            return mem.read(size)

    def progress(self):
        data = self.read(self.ready["progress"], 16 * self.ready["threads"])
        return [struct.unpack_from("<QQ", data, 16 * t) for t in range(self.ready["threads"])]

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def assert_one_instant(mm, ready):
    """Each thread's pages are as its progress word says, at one instant."""
    progress = mm.read(ready["progress"], 16 * ready["threads"])
    pages = ready["pages"]
    for t in range(ready["threads"]):
        g, i = struct.unpack_from("<QQ", progress, 16 * t)
        assert g >= 3
        data = mm.read(ready["buf"] + t * pages * PAGE, pages * PAGE)
        words = struct.unpack(f"<{pages * WORDS}Q", data)
        for page in range(pages):
            got = words[page * WORDS:(page + 1) * WORDS]
            if page < i:
                assert set(got) == {g}, f"thread {t} page {page}: {set(got)} not {g}"
            elif page > i:
                assert set(got) == {g - 1}, f"thread {t} page {page}: {set(got)} not {g - 1}"
            else:                                  # being written: g, then g - 1
                k = got.index(g - 1) if g - 1 in got else WORDS
                assert set(got[:k]) <= {g} and set(got[k:]) <= {g - 1}


def traces(pid):
    """What a program could see of a checkpoint: its children, its descriptors."""
    children = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            children |= set(f.read().split())
    return children, sorted(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("threads", [1, 4])
def test_snapshot_holds_one_instant_and_leaves_no_trace(build_c, tmp_path, threads):
    program = Rewriter(build_c("ckpt_rewrite", 64, "-pthread"), threads)
    try:
        before = traces(program.pid)
        report = {}
        path = checkpoint(program.pid, tmp_path / "snap.ckpt", report=report)
        assert report["mode"] == "snapshot"
        assert report["frozen"] < report["time"]
        image = registry.open_image(path)
        try:
            assert len(image.tasks) == threads
            assert_one_instant(image.tasks[0].mm, program.ready)
        finally:
            image.close()
        with Source.open(path) as source:
            assert "copy-on-write snapshot" in verify(source).text()
        assert traces(program.pid) == before
        sigchld = int.from_bytes(program.read(program.ready["sigchld"], 8), "little")
        assert sigchld == 0
        first = program.progress()
        deadline = time.time() + 5
        while program.progress() == first:
            assert time.time() < deadline, "the program did not go on"
            time.sleep(0.01)
    finally:
        program.kill()


def test_stop_keeps_the_program_stopped_for_the_whole_write(build_c, tmp_path):
    program = Rewriter(build_c("ckpt_rewrite", 64, "-pthread"))
    try:
        report = {}
        path = checkpoint(program.pid, tmp_path / "stop.ckpt", report=report, stop=True)
        assert report["mode"] == "stop" and report["frozen"] == report["time"]
        image = registry.open_image(path)
        try:
            assert_one_instant(image.tasks[0].mm, program.ready)
        finally:
            image.close()
        with Source.open(path) as source:
            assert "snapshot" not in verify(source).text()
    finally:
        program.kill()


def test_fork_tree_under_snapshot(build_c, tmp_path):
    exe = build_c("ckpt_fork", 64)
    proc = subprocess.Popen([str(exe), "4"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        while not line.startswith("ready"):
            line = proc.stdout.readline()
        ready = dict(item.split("=") for item in line.split()[1:])
        buffer, size = int(ready["buffer"], 16), int(ready["size"], 16)
        pids = [proc.pid]
        for pid in pids:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += [int(c) for c in f.read().split()]
        assert len(pids) == 4
        before = {pid: traces(pid) for pid in pids}
        report = {}
        path = checkpoint(proc.pid, tmp_path / "tree.ckpt", tree=True, report=report)
        assert report["mode"] == "snapshot"
        image = registry.open_image(path)
        try:
            assert sorted({t.tgid for t in image.tasks}) == sorted(pids)
            for task in image.tasks:
                with open(f"/proc/{task.tgid}/mem", "rb") as mem:
                    mem.seek(buffer)
                    assert task.mm.read(buffer, size) == mem.read(size)   # written once
        finally:
            image.close()
        assert {pid: traces(pid) for pid in pids} == before
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                assert re.match(r"[RS]", f.read().rsplit(")", 1)[1].split()[0])
    finally:
        for pid in reversed(pids):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        proc.wait()


def test_program_killed_during_the_write_still_gives_its_image(build_c, tmp_path):
    program = Rewriter(build_c("ckpt_rewrite", 64, "-pthread"))
    ready = program.ready

    def kill_it(done, total):
        if program.proc.poll() is None:
            program.kill()

    path = checkpoint(program.pid, tmp_path / "gone.ckpt", progress=kill_it)
    image = registry.open_image(path)
    try:
        assert_one_instant(image.tasks[0].mm, ready)
    finally:
        image.close()


def test_memory_a_fork_does_not_share_is_copied_while_stopped(build_c, tmp_path):
    proc = subprocess.Popen([str(build_c("ckpt_nofork", 64))], stdout=subprocess.PIPE,
                            text=True)
    try:
        ready = {k: int(v, 16) for k, v in (i.split("=") for i in proc.stdout.readline()
                                                                    .split()[1:])}
        report = {}
        path = checkpoint(proc.pid, tmp_path / "nofork.ckpt", report=report)
        assert report["mode"] == "snapshot"
        image = registry.open_image(path)
        try:
            mm = image.tasks[0].mm
            for name, tag in (("wipe", 0x10), ("dontfork", 0x40), ("shared", 0x70)):
                expected = b"".join(bytes([tag + i]) * PAGE for i in range(ready["pages"]))
                assert mm.read(ready[name], ready["pages"] * PAGE) == expected, name
        finally:
            image.close()
    finally:
        proc.kill()
        proc.wait()


def test_snapshot_of_a_strict_seccomp_process_leaves_it_alive(build_c, tmp_path):
    """A process in SECCOMP_MODE_STRICT is seized with PTRACE_O_SUSPEND_SECCOMP; the
    TRACECLONE option set for its clone must keep it, else strict mode kills the process
    at the injected clone(). It runs on after its snapshot and answers."""
    proc = subprocess.Popen([str(build_c("ckpt_strict", 64))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        deadline = time.time() + 10
        while "Seccomp:\t1" not in Path(f"/proc/{proc.pid}/status").read_text():
            assert time.time() < deadline, "not in strict mode"
            time.sleep(0.01)
        report = {}
        checkpoint(proc.pid, tmp_path / "strict.ckpt", report=report)
        assert report["mode"] == "snapshot"
        proc.stdin.write(b"x")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"alive\n"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("quiet", [False, True])
def test_summary_line_on_a_terminal(build_c, tmp_path, quiet):
    import pty
    program = Rewriter(build_c("ckpt_rewrite", 64, "-pthread"))
    master, slave = pty.openpty()
    try:
        run = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(program.pid),
                              "-o", str(tmp_path / "x.ckpt"), *(["-q"] if quiet else [])],
                             stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        os.close(slave)
        slave = None
        text = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            text += chunk
        assert run.returncode == 0 and run.stdout.strip() == str(tmp_path / "x.ckpt")
        line = text.decode()
        if quiet:
            assert line == ""
        else:
            assert re.search(rf"(?m)^checkpoint {program.pid}: snapshot, stopped \d+ ms, \d+ pages "
                            r"\(\d+\.\d MiB, full\), \d+\.\d\d s\r?$", line), line
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
        program.kill()
