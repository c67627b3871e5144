"""crfs checkpoint on real processes (tests/c/ckpt_*.c).

Each program is checkpointed with after="stop"; the truth is then read from the kernel
while the process is still stopped (/proc/<pid>/maps, ptrace registers, the bytes the
program wrote) and compared with the image through a crfs mount and through the model.
Then the process is continued and must go on counting.
"""

import ctypes
import errno
import inspect
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from crfs import kernel
from crfs.checkpoint import (CheckpointError, checkpoint, checkpoint_into_store, inject,
                             procfs, ptrace)
from crfs.checkpoint.capture import UnsupportedVma, vma_kind
from crfs.checkpoint.procfs import MapsLine
from crfs.model import registry
from mountfs import CRFS, Mount, errors_in_log

PAGE = 4096
HIDDEN = ("[vsyscall]", "[vvar]", "[vvar_vclock]")    # not saved (docs/checkpoint.md)
XMM0 = 160                                            # offset of xmm0 in the FXSAVE area


# ----------------------------------------------------------------------------- helpers

class Program:
    """A test program running until killed; `ready` holds its "ready k=v" values (hex),
    `lines` what it printed before that line."""

    def __init__(self, exe, *args):
        self.proc = subprocess.Popen([str(exe), *map(str, args)], stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid
        # Raw reads of the pipe: select cannot see lines already in a file object's buffer.
        fd, text = self.proc.stdout.fileno(), ""
        deadline = time.time() + 10
        while not re.search(r"(?m)^ready.*\n", text):
            readable, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
            chunk = os.read(fd, 65536).decode() if readable else ""
            if not chunk:
                self.kill()
                raise AssertionError(f"{exe} did not get ready: {text!r}")
            text += chunk
        *self.lines, line = text[:re.search(r"(?m)^ready.*\n", text).end()].splitlines()
        pairs = (item.split("=", 1) for item in line.split()[1:])
        self.ready = {key: int(value, 16) if key != "program" else value
                      for key, value in pairs}

    def counter(self):
        with open(f"/proc/{self.pid}/mem", "rb") as mem:
            mem.seek(self.ready["counter"])
            return int.from_bytes(mem.read(8), "little")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid, letters, timeout=5):
    deadline = time.time() + timeout
    while state(pid) not in letters:
        assert time.time() < deadline, f"pid {pid} stays {state(pid)}"
        time.sleep(0.01)


def ptrace_truth(pid):
    """{tid: (regs, xstate, tls)} of every thread, read by our own brief ptrace session."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    truth = {}
    for tid in tids:
        ptrace.seize(tid)
        ptrace.interrupt(tid)
        ptrace.wait_stop(tid)
    try:
        for tid in tids:
            truth[tid] = (ptrace.get_regs(tid), ptrace.get_xstate(tid), ptrace.get_tls(tid))
    finally:
        for tid in tids:
            ptrace.detach(tid)
    return truth


def maps_fields(text):
    """maps lines as (range, perms, offset, name) without dev and inode, the areas crfs does
    not save left out."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        name = parts[5].strip() if len(parts) > 5 else ""
        if name not in HIDDEN:
            out.append((parts[0], parts[1], parts[2], name))
    return out


def proc_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return maps_fields(f.read())


def regs_file(path):
    return {name: int(value, 16) for name, value in
            (line.split() for line in path.read_text().splitlines())}


def read_mem(path, address, size):
    with open(path, "rb") as mem:
        mem.seek(address)
        return mem.read(size)


def pattern(size, seed):
    """The bytes tests/c/ckpt_common.h pattern() gives for offsets 0..size-1."""
    return bytes((i * 131 + seed * 7 + (i >> 12)) & 0xFF for i in range(size))


def assert_continues(program):
    os.kill(program.pid, signal.SIGCONT)
    before = program.counter()
    deadline = time.time() + 5
    while program.counter() == before:
        assert time.time() < deadline, "the process did not continue"
        time.sleep(0.01)


def stopped_checkpoint(program, path, **options):
    """Checkpoint leaving the process stopped; returns the truth read while it is."""
    checkpoint(program.pid, path, after="stop", **options)
    wait_state(program.pid, "T")
    return proc_maps(program.pid), ptrace_truth(program.pid)


@pytest.fixture(scope="module")
def mount(tmp_path_factory):
    mount = Mount(tmp_path_factory.mktemp("checkpoint"))
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text())


def task_dir(mount, name, pid):
    return mount.path / name / "tasks" / str(pid)


def no_leftovers(directory):
    return not [n for n in os.listdir(directory) if n.startswith(".crfs-")]


# ----------------------------------------------------------------------------- task state

def test_oom_score_adj_rseq_zombies_and_stopped_child(build_c, mount):
    """tests/c/state_target.c (oom_score_adj 400, glibc's rseq area, two zombies, a
    stopped child), `crfs checkpoint --tree`: the mount shows its oom_score_adj and rseq
    registration, each zombie's status and how it ended, the stopped child stopped."""
    with Program(build_c("state_target", 64)) as program:
        z1, z2, st = (program.ready[k] for k in ("z1", "z2", "st"))
        try:
            checkpoint(program.pid, mount.store / "state.ckpt", tree=True, after="detach",
                       via="ptrace")
            task = task_dir(mount, "state.ckpt", program.pid)
            assert (task / "oom_score_adj").read_text() == "400\n"
            rseq = dict(line.split("\t") for line in (task / "rseq").read_text().splitlines())
            assert int(rseq["address"], 16) and rseq["size"] == "32"
            assert rseq["signature"] == "0x53053053"            # glibc's RSEQ_SIG on x86
            assert not (task / "exit").exists()
            for pid, ended in ((z1, "exited 7\nstatus\t0x700\n"),
                               (z2, "killed SIGUSR2\nstatus\t0xc\n")):
                zombie = task_dir(mount, "state.ckpt", pid)
                assert status_map((zombie / "status").read_text())["State"].strip() \
                    == "Z (zombie)"
                assert (zombie / "exit").read_text() == ended + "exit_signal\t17\n"
                assert not (zombie / "rseq").exists()
            stopped = task_dir(mount, "state.ckpt", st)
            assert status_map((stopped / "status").read_text())["State"].strip() \
                == "T (stopped)"
            assert (stopped / "oom_score_adj").read_text() == "400\n"
        finally:
            os.kill(st, signal.SIGKILL)


def test_personality_thp_subreaper_sched_and_exit_signal(build_c, mount):
    """tests/c/taskattr_target.c (personality READ_IMPLIES_EXEC|ADDR_COMPAT_LAYOUT, THP
    disabled, a child subreaper, nice 7 SCHED_BATCH, a child cloned with exit signal
    SIGUSR1 and its grandchild), `crfs checkpoint --tree`: the mount shows what /proc
    shows of each."""
    with Program(build_c("taskattr_target", 64)) as program:
        child, grandchild = program.ready["child"], program.ready["grandchild"]
        try:
            checkpoint(program.pid, mount.store / "attr.ckpt", tree=True, after="detach",
                       via="ptrace")
            compare_task_attributes(mount, ((program.pid, 17, 1), (child, 10, 0),
                                            (grandchild, 17, 0)))
        finally:
            for pid in (child, grandchild):
                os.kill(pid, signal.SIGKILL)


def compare_task_attributes(mount, tasks):
    """Each of `tasks` (pid, exit_signal, subreaper) in the mount against its /proc."""
    for pid, exit_signal, subreaper in tasks:
        task = task_dir(mount, "attr.ckpt", pid)
        proc = f"/proc/{pid}"
        assert (task / "personality").read_text() == open(f"{proc}/personality").read()
        assert (task / "personality").read_text() == "00600000\n"
        thp = status_map(open(f"{proc}/status").read())["THP_enabled"]
        assert status_map((task / "status").read_text())["THP_enabled"] == thp
        assert thp.strip() == "0"
        stat = open(f"{proc}/stat").read().rsplit(")", 1)[1].split()
        sched = dict(line.split("\t") for line in (task / "sched").read_text().splitlines())
        assert sched == {"policy": stat[41 - 3], "rt_priority": stat[40 - 3],
                         "nice": stat[19 - 3], "exit_signal": stat[38 - 3],
                         "child_subreaper": str(subreaper)}
        assert (sched["policy"], sched["nice"], sched["exit_signal"]) \
            == ("3", "7", str(exit_signal))


# ----------------------------------------------------------------------------- process state

STATE_LINES = ("Umask", "Uid", "Gid", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt",
               "CapInh", "CapPrm", "CapEff", "CapBnd")


def status_map(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_signals_limits_creds_umask_and_cwd(build_c, mount, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    with Program(build_c("ckpt_signals", 64), workdir) as program:
        stopped_checkpoint(program, mount.store / "signals.ckpt")
        task = task_dir(mount, "signals.ckpt", program.pid)
        with open(f"/proc/{program.pid}/status") as f:
            truth = status_map(f.read())
        shown = status_map((task / "status").read_text())
        assert {key: shown[key].strip() for key in STATE_LINES} == {
            key: truth[key].strip() for key in STATE_LINES}
        assert shown["Groups"].split() == truth["Groups"].split()
        assert int(shown["SigBlk"], 16) == 1 << (signal.SIGUSR2 - 1)
        assert int(shown["ShdPnd"], 16) == 1 << (signal.SIGUSR2 - 1)
        assert int(shown["SigCgt"], 16) & 1 << (signal.SIGUSR1 - 1)
        assert shown["Umask"].strip() == "0027"
        with open(f"/proc/{program.pid}/limits") as f:
            assert (task / "limits").read_text() == f.read()
        lines = (task / "signals").read_text().splitlines()
        assert len(lines) == 64
        usr1 = lines[signal.SIGUSR1 - 1].split("\t")
        assert usr1[:3] == ["10", "SIGUSR1", f"{program.ready['handler']:#x}"]
        assert int(usr1[3].split()[1], 16) & 0x10000000                 # SA_RESTART
        assert int(usr1[4].split()[1], 16) == 1 << (signal.SIGTERM - 1)
        assert lines[signal.SIGPIPE - 1].split("\t")[2] == "SIG_IGN"
        assert lines[signal.SIGUSR2 - 1].split("\t")[2] == "SIG_DFL"
        assert (task / "cwd").read_text() == f"{workdir}\n"
        assert (task / "root").read_text() == "/\n"
        exe = os.readlink(f"/proc/{program.pid}/exe")         # MM.exe_objref
        assert (task / "exe").read_text() == f"{exe}\n"
        image = registry.open_image(mount.store / "signals.ckpt")
        try:
            exe_id = image.tasks[0].mm.exe_id
            assert (exe_id.ino, exe_id.size) == (os.stat(exe).st_ino, os.stat(exe).st_size)
            signals = image.tasks[0].signals
            queued = signals.group.shared_pending.queue
            assert [(i.signo, i.pid, i.sigval_ptr & 0xFFFFFFFF) for i in queued] == [
                (signal.SIGUSR2, program.pid, 4242)]
            assert signals.altstack.sp == program.ready["stack"]
            assert signals.altstack.size == 65536
            itimers = signals.group.itimers
            assert itimers.real_incr == 7_000_000_000
            assert 3500 * 10**9 < itimers.real_value <= 3600 * 10**9
            assert image.tasks[0].exit.pdeath_signal == signal.SIGUSR1   # an injected prctl
        finally:
            image.close()
        assert_continues(program)


# ----------------------------------------------------------------------------- one process

def test_counter_maps_regs_and_continues(build_c, mount):
    with Program(build_c("ckpt_counter", 64)) as program:
        maps, truth = stopped_checkpoint(program, mount.store / "counter.ckpt")
        task = task_dir(mount, "counter.ckpt", program.pid)
        assert maps_fields((task / "mm/maps").read_text()) == maps
        assert regs_file(task / "regs") == truth[program.pid][0]
        assert (task / "fpu").read_bytes() == truth[program.pid][1]
        assert (task / "comm").read_text() == "ckpt_counter-m6\n"
        assert read_mem(task / "mem", program.ready["counter"], 8) \
            == read_mem(f"/proc/{program.pid}/mem", program.ready["counter"], 8)
        assert "result: sound" in (mount.path / "counter.ckpt" / "verify").read_text()
        assert_continues(program)


@pytest.mark.parametrize("fmt", ["cr", "cpt"])
def test_counter_in_the_other_formats(build_c, tmp_path, fmt):
    with Program(build_c("ckpt_counter", 64)) as program:
        path = tmp_path / f"counter.{fmt}"
        maps, truth = stopped_checkpoint(program, path, fmt=fmt)
        image = registry.open_image(path)
        try:
            task = image.task(program.pid)
            regs = dict(truth[program.pid][0])
            if fmt == "cr":      # cr_hdr v4 has no fs_base/gs_base (docs/checkpoint.md)
                regs.update(fs_base=0, gs_base=0)
            assert task.regs.as_dict() == regs
            assert task.fpu == truth[program.pid][1][:512]      # FXSAVE region
            saved = [(f"{v.start:08x}-{v.end:08x}", v.file or "") for v in task.mm.vmas]
            # The vDSO is an anonymous VMA in these formats; names of anon areas are ours.
            assert saved == [(r, n if n.startswith("/") else "") for r, _, _, n in maps]
            assert task.mm.read(program.ready["counter"], 8) \
                == read_mem(f"/proc/{program.pid}/mem", program.ready["counter"], 8)
        finally:
            image.close()
        assert_continues(program)


def test_32bit_task_keeps_its_tls_and_auxv(build_c, tmp_path):
    with Program(build_c("ckpt_counter", 32)) as program:
        path = tmp_path / "counter32.ckpt"
        _, truth = stopped_checkpoint(program, path)
        regs, _, tls = truth[program.pid]
        image = registry.open_image(path)
        try:
            task = image.task(program.pid)
            assert task.regs["cs"] == 0x23 and task.regs.as_dict() == regs
            assert task.tls == tls and any(tls)     # glibc's i386 TLS is a GDT entry
            assert dict(task.mm.auxv)[6] == PAGE   # AT_PAGESZ, read as 32-bit words
            # No syscall is injected into a 32-bit task; its robust list is the compat one,
            # which get_robust_list from a 64-bit caller does not show.
            assert task.futex.clear_child_tid == 0 and task.futex.robust_list == 0
        finally:
            image.close()
        assert_continues(program)


def test_heap_pattern_reads_back_through_mem(build_c, mount):
    with Program(build_c("ckpt_heap", 64), 8) as program:
        maps, _ = stopped_checkpoint(program, mount.store / "heap.ckpt")
        task = task_dir(mount, "heap.ckpt", program.pid)
        heap, size = program.ready["heap"], program.ready["size"]
        assert read_mem(task / "mem", heap, size) == pattern(size, 1)
        assert maps_fields((task / "mm/maps").read_text()) == maps
        assert_continues(program)


def test_private_file_mapping_saves_only_written_pages(build_c, mount, tmp_path):
    data = tmp_path / "mapped.bin"
    data.write_bytes(bytes(range(256)) * (8 * PAGE // 256))
    with Program(build_c("ckpt_filemap", 64), data) as program:
        maps, _ = stopped_checkpoint(program, mount.store / "filemap.ckpt")
        start = program.ready["map"]
        image = registry.open_image(mount.store / "filemap.ckpt")
        try:
            vma = image.task(program.pid).mm.vma_at(start)
            assert (vma.kind, vma.file) == ("file", str(data))
            assert [addr for addr, _ in vma.pages] == [start + PAGE, start + 5 * PAGE]
        finally:
            image.close()
        mem = task_dir(mount, "filemap.ckpt", program.pid) / "mem"
        assert read_mem(mem, start + PAGE, PAGE) == pattern(PAGE, 2)
        assert read_mem(mem, start + 5 * PAGE, PAGE) == pattern(PAGE, 3)
        assert read_mem(mem, start, PAGE) == bytes(PAGE)     # clean: the file has it
        assert_continues(program)


def test_shared_anonymous_mapping(build_c, mount):
    with Program(build_c("ckpt_shared", 64)) as program:
        maps, _ = stopped_checkpoint(program, mount.store / "shared.ckpt")
        task = task_dir(mount, "shared.ckpt", program.pid)
        start, written = program.ready["map"], program.ready["written"]
        assert read_mem(task / "mem", start, written) == pattern(written, 4)
        assert maps_fields((task / "mm/maps").read_text()) == maps
        info = (task / f"mm/vmas/{start:08x}-{start + program.ready['size']:08x}/info")
        assert "kind: shm-anon" in info.read_text()
        assert f"pages dumped: {written // PAGE}" in info.read_text()
        assert_continues(program)


def test_xmm_registers_are_in_the_fpu_state(build_c, mount):
    with Program(build_c("ckpt_xmm", 64)) as program:
        _, truth = stopped_checkpoint(program, mount.store / "xmm.ckpt")
        task = task_dir(mount, "xmm.ckpt", program.pid)
        fpu = (task / "fpu").read_bytes()
        assert fpu == truth[program.pid][1]
        expected = bytes((0x10 * reg + byte + 1) & 0xFF for reg in range(16)
                         for byte in range(16))
        assert fpu[XMM0:XMM0 + 256] == expected
        assert regs_file(task / "regs") == truth[program.pid][0]
        assert_continues(program)


def test_threads_are_tasks_sharing_one_mm(build_c, mount):
    with Program(build_c("ckpt_threads", 64, "-pthread"), 4) as program:
        maps, truth = stopped_checkpoint(program, mount.store / "threads.ckpt")
        assert len(truth) == 5
        tasks = mount.path / "threads.ckpt" / "tasks"
        assert sorted(int(t) for t in os.listdir(tasks)) == sorted(truth)
        for tid, (regs, xstate, _) in truth.items():
            assert regs_file(tasks / str(tid) / "regs") == regs
            assert (tasks / str(tid) / "fpu").read_bytes() == xstate
            status = (tasks / str(tid) / "status").read_text()
            assert f"Tgid:\t{program.pid}\n" in status
            assert maps_fields((tasks / str(tid) / "mm/maps").read_text()) == maps
        slots = read_mem(tasks / str(program.pid) / "mem", program.ready["slots"], 8 * 4)
        assert all(int.from_bytes(slots[i:i + 8], "little") for i in range(0, 32, 8))
        assert_continues(program)


# ----------------------------------------------------------------------------- futex fields

STATS = ("sleeps", "sleep_errors", "short_sleeps", "waits", "wait_errors", "short_waits",
         "reads", "usr1_count", "usr1_tid")
ERESTARTSYS, ERESTART_RESTARTBLOCK = 512, 516
MASK64 = (1 << 64) - 1
# role -> (syscall numbers it sleeps in, the -errno the kernel left in rax to restart it).
# A sleep already interrupted by an earlier checkpoint goes on in restart_syscall (219).
IN_SYSCALL = {"sleeper": ({35, 230, 219}, ERESTART_RESTARTBLOCK),  # (clock_)nanosleep
              "waiter": ({202, 219}, ERESTART_RESTARTBLOCK),       # futex with a timeout
              "reader": ({0}, ERESTARTSYS)}                        # read of an empty pipe


def thread_reports(program):
    """{tid: {"role", "ctid", "robust", "robust_len"}} from ckpt_tid's "thread ..." lines."""
    reports = {}
    for line in program.lines:
        fields = dict(item.split("=", 1) for item in line.split()[1:])
        role = fields.pop("role")
        values = {key: int(value, 16) for key, value in fields.items()}
        reports[values.pop("tid")] = dict(values, role=role)
    return reports


def tid_of(reports, role):
    return next(tid for tid, report in reports.items() if report["role"] == role)


def read_stats(program):
    raw = read_mem(f"/proc/{program.pid}/mem", program.ready["stats"], 8 * len(STATS))
    return dict(zip(STATS, struct.unpack(f"<{len(STATS)}Q", raw)))


def assert_futex_fields(task, report):
    assert report["ctid"] and report["robust"]
    assert (task.futex.clear_child_tid, task.futex.robust_list,
            task.futex.robust_list_len) \
        == (report["ctid"], report["robust"], report["robust_len"])


def assert_undisturbed(program, rounds=2):
    """The sleeper and the waiter complete `rounds` more sleeps; nothing ever came back
    early, with EINTR or at all (the reader)."""
    before = read_stats(program)
    deadline = time.time() + 5
    while True:
        stats = read_stats(program)
        if stats["sleeps"] >= before["sleeps"] + rounds \
                and stats["waits"] >= before["waits"] + rounds:
            break
        assert time.time() < deadline, f"the sleeping threads stopped: {stats}"
        time.sleep(0.05)
    assert {key: stats[key] for key in ("sleep_errors", "short_sleeps", "wait_errors",
                                        "short_waits", "reads")} \
        == dict.fromkeys(("sleep_errors", "short_sleeps", "wait_errors", "short_waits",
                          "reads"), 0)
    assert program.proc.poll() is None
    return stats


class Injected(dict):
    """{tid: registers read just before its clear_child_tid was asked}, filled while
    checkpoints run; `scratch[tid]` is (address, 8 bytes there) of the stack word the
    injection borrows; `before[tid]` may hold a function to call first."""

    def __init__(self):
        super().__init__()
        self.scratch = {}
        self.before = {}


@pytest.fixture
def injected(monkeypatch):
    seen = Injected()
    original = inject.Injector.clear_child_tid

    def spy(self, tid, regs):
        if tid in seen.before:
            seen.before[tid]()
        seen[tid] = ptrace.get_regs(tid)
        address = (seen[tid]["rsp"] - inject.SCRATCH_BELOW_RSP) & ~7
        seen.scratch[tid] = (address, read_mem(f"/proc/{self.pid}/mem", address, 8))
        return original(self, tid, regs)

    monkeypatch.setattr(inject.Injector, "clear_child_tid", spy)
    return seen


def test_each_thread_has_its_clear_child_tid_and_robust_list(build_c, tmp_path, injected):
    with Program(build_c("ckpt_tid", 64, "-pthread"), 4) as program:
        reports = thread_reports(program)
        assert len(reports) == 1 + 4 + 3 and program.pid in reports
        path = tmp_path / "tid.ckpt"
        _, truth = stopped_checkpoint(program, path)
        image = registry.open_image(path)       # read back by the ckpt loader
        try:
            assert sorted(t.pid for t in image.tasks) == sorted(reports)
            for task in image.tasks:
                assert_futex_fields(task, reports[task.pid])
                # The image holds the registers from before the injection; the thread,
                # now in its group stop, has them again.
                assert task.regs.as_dict() == injected[task.pid] == truth[task.pid][0]
                assert task.fpu == truth[task.pid][1]
                # The stack word the prctl wrote holds its old bytes again.
                address, word = injected.scratch[task.pid]
                assert read_mem(f"/proc/{program.pid}/mem", address, 8) == word
        finally:
            image.close()
        assert_continues(program)
        assert_undisturbed(program)


def syscall_of(path):
    """The number of the syscall a thread is in (/proc/PID/task/TID/syscall), or None
    while it runs ("running")."""
    with open(path) as f:
        word = f.read().split()[0]
    return int(word) if word.lstrip("-").isdigit() else None


def wait_in_syscalls(pid, reports, timeout=30):
    """Until each IN_SYSCALL thread is inside one of its syscalls (/proc's syscall file):
    on a loaded machine a thread let go by the program's start barrier may still be on its
    way out of that futex when the program says it is ready."""
    deadline = time.monotonic() + timeout
    for role, (numbers, _) in IN_SYSCALL.items():
        path = f"/proc/{pid}/task/{tid_of(reports, role)}/syscall"
        while syscall_of(path) not in numbers:
            assert time.monotonic() < deadline, f"{role} never in {numbers}"
            time.sleep(0.01)


def test_threads_in_syscalls_go_on_undisturbed_after_detach(build_c, tmp_path):
    with Program(build_c("ckpt_tid", 64, "-pthread"), 2) as program:
        reports = thread_reports(program)
        for n in range(4):
            wait_in_syscalls(program.pid, reports)
            path = checkpoint(program.pid, tmp_path / f"run{n}.ckpt")      # detach
            assert state(program.pid) not in "tT"
            image = registry.open_image(path)
            try:
                for task in image.tasks:
                    assert_futex_fields(task, reports[task.pid])
                # Those three were stopped inside their syscalls, with a restart pending:
                # the registers were put back exactly, or the checks below would fail.
                for role, (numbers, code) in IN_SYSCALL.items():
                    regs = image.task(tid_of(reports, role)).regs
                    assert regs["orig_rax"] in numbers and regs["rax"] == -code & MASK64
            finally:
                image.close()
            time.sleep(0.05)
        slots = read_mem(f"/proc/{program.pid}/mem", program.ready["slots"], 16)
        assert_undisturbed(program)
        assert_continues(program)
        later = read_mem(f"/proc/{program.pid}/mem", program.ready["slots"], 16)
        assert all(later[i:i + 8] != slots[i:i + 8] for i in (0, 8))


def test_signal_queued_during_the_injection_is_delivered_after(build_c, tmp_path,
                                                               injected):
    libc = ctypes.CDLL(None, use_errno=True)
    with Program(build_c("ckpt_tid", 64, "-pthread"), 2) as program:
        reports = thread_reports(program)
        target = tid_of(reports, "worker")
        # Queued while the thread is stopped: the step dequeues it before the syscall runs.
        injected.before[target] = lambda: libc.tgkill(program.pid, target, signal.SIGUSR1)
        path = checkpoint(program.pid, tmp_path / "usr1.ckpt")
        image = registry.open_image(path)
        try:
            for task in image.tasks:
                if task.pid == target:      # not asked: clear_child_tid left 0
                    assert task.futex.clear_child_tid == 0
                    assert task.futex.robust_list == reports[target]["robust"]
                else:
                    assert_futex_fields(task, reports[task.pid])
                assert task.regs.as_dict() == injected[task.pid]
        finally:
            image.close()
        deadline = time.time() + 5
        while read_stats(program)["usr1_count"] == 0:
            assert time.time() < deadline, "SIGUSR1 was lost"
            time.sleep(0.01)
        time.sleep(0.05)
        stats = assert_undisturbed(program)
        assert (stats["usr1_count"], stats["usr1_tid"]) == (1, target)
        assert_continues(program)


def test_group_stopped_process_stays_stopped(build_c, tmp_path):
    with Program(build_c("ckpt_tid", 64, "-pthread"), 2) as program:
        reports = thread_reports(program)
        os.kill(program.pid, signal.SIGSTOP)
        for tid in reports:
            wait_state(f"{program.pid}/task/{tid}", "T")
        path = checkpoint(program.pid, tmp_path / "stopped.ckpt")        # detach
        image = registry.open_image(path)
        try:
            for task in image.tasks:
                assert_futex_fields(task, reports[task.pid])
        finally:
            image.close()
        time.sleep(0.1)
        assert {state(f"{program.pid}/task/{tid}") for tid in reports} == {"T"}
        assert_continues(program)
        assert_undisturbed(program)


def test_thread_stopped_in_an_rseq_critical_section_is_still_aborted(build_c, tmp_path):
    with Program(build_c("ckpt_rseq", 64, "-pthread")) as program:
        ready = program.ready
        if not ready["rseq"]:
            pytest.skip("glibc registered no rseq area")
        rseq_cs = ready["rseq"] + 8                     # struct rseq's rseq_cs pointer
        for attempt in range(20):
            path = checkpoint(program.pid, tmp_path / "rseq.ckpt", after="stop")
            wait_state(program.pid, "T")
            image = registry.open_image(path)
            try:
                task = image.task(ready["tid"])
                rip, ctid = task.regs["rip"], task.futex.clear_child_tid
            finally:
                image.close()
            if ready["start"] <= rip < ready["end"]:
                break
            os.kill(program.pid, signal.SIGCONT)    # stopped between two sections: again
            time.sleep(0.01)
        else:
            pytest.fail("the spinning thread was never caught inside its critical section")
        assert ctid
        # The injected syscall left the section, and the kernel cleared rseq_cs then; it
        # was put back, so the thread is aborted on its way back, as without the injection.
        assert int.from_bytes(read_mem(f"/proc/{program.pid}/mem", rseq_cs, 8), "little") \
            == ready["cs"]
        aborts = int.from_bytes(read_mem(f"/proc/{program.pid}/mem", ready["aborts"], 8),
                                "little")
        assert_continues(program)
        deadline = time.time() + 5
        while int.from_bytes(read_mem(f"/proc/{program.pid}/mem", ready["aborts"], 8),
                             "little") == aborts:
            assert time.time() < deadline, "the thread was not aborted out of its section"
            time.sleep(0.01)


# ----------------------------------------------------------------------------- trees

def process_tree(root):
    """Depth-first pids of `root` and its descendants (children in pid order)."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    order, stack = [], [root]
    while stack:
        pid = stack.pop()
        order.append(pid)
        stack.extend(sorted((c for c, p in parent.items() if p == pid), reverse=True))
    return order


def test_fork_tree_in_depth_first_order(build_c, mount):
    with Program(build_c("ckpt_fork", 64), 4) as program:
        pids = process_tree(program.pid)
        assert len(pids) == 4
        try:
            checkpoint(program.pid, mount.store / "tree.ckpt", tree=True, after="stop")
            for pid in pids:
                wait_state(pid, "T")
            ppids = {pid: int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                     for pid in pids}
            truths = {pid: (proc_maps(pid), ptrace_truth(pid)[pid]) for pid in pids}
            image = registry.open_image(mount.store / "tree.ckpt")
            try:
                assert [(t.pid, t.ppid, t.tgid) for t in image.tasks] \
                    == [(pid, ppids[pid], pid) for pid in pids]
            finally:
                image.close()
            buffer, size = program.ready["buffer"], program.ready["size"]
            for tag, pid in enumerate(pids, start=1):
                task = task_dir(mount, "tree.ckpt", pid)
                maps, (regs, _, _) = truths[pid]
                assert read_mem(task / "mem", buffer, size) == pattern(size, tag)
                assert maps_fields((task / "mm/maps").read_text()) == maps
                assert regs_file(task / "regs") == regs
            assert_continues(program)
        finally:
            for pid in pids[1:]:
                os.kill(pid, signal.SIGKILL)


def test_two_process_tree_as_cpt(build_c, tmp_path):
    with Program(build_c("ckpt_fork", 64), 2) as program:
        parent, child = process_tree(program.pid)
        try:
            path = tmp_path / "two.cpt"
            checkpoint(program.pid, path, fmt="cpt", tree=True)
            image = registry.open_image(path)
            try:
                assert [(t.pid, t.ppid) for t in image.tasks] \
                    == [(parent, os.getpid()), (child, parent)]
                buffer, size = program.ready["buffer"], program.ready["size"]
                assert image.task(child).mm.read(buffer, size) == pattern(size, 2)
            finally:
                image.close()
            assert state(child) != "T" and state(parent) != "T"    # detached: running
        finally:
            os.kill(child, signal.SIGKILL)


# ----------------------------------------------------------------------------- after, errors

def test_kill_after_checkpoint(build_c, tmp_path):
    with Program(build_c("ckpt_counter", 64)) as program:
        checkpoint(program.pid, tmp_path / "killed.ckpt", after="kill")
        assert program.proc.wait(timeout=5) == -signal.SIGKILL
        assert (tmp_path / "killed.ckpt").stat().st_size > 0


# A parent that reaps its child half a second after it becomes a zombie, as a busy init does.
SLOW_REAPER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.argv[1], "64"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    time.sleep(0.01)
time.sleep(0.5)
child.wait()
"""


def test_kill_returns_once_the_pid_is_free(build_c, tmp_path):
    """--kill waits for the killed process's parent to reap it: a restart that follows
    gets the image's pid back."""
    reaper = subprocess.Popen([sys.executable, "-c", SLOW_REAPER,
                               str(build_c("ckpt_counter", 64))], stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(reaper.stdout.readline())
        checkpoint(pid, tmp_path / "killed.ckpt", after="kill")
        assert not os.path.exists(f"/proc/{pid}")
    finally:
        reaper.kill()
        reaper.wait()


def test_format_that_cannot_hold_a_vma_leaves_no_image(build_c, mount):
    before = sorted(os.listdir(mount.store))
    with Program(build_c("ckpt_shared", 64)) as program:
        with pytest.raises(CheckpointError, match="cannot hold the shared mapping") as exc:
            checkpoint_into_store(program.pid, mount.store, fmt="cr")
        assert exc.value.errno == errno.EOPNOTSUPP
        assert state(program.pid) not in "tT"
        assert_continues(program)
    assert sorted(os.listdir(mount.store)) == before


def test_process_exiting_during_the_checkpoint(build_c, tmp_path):
    with Program(build_c("ckpt_heap", 64), 8) as program:
        def kill_it(done, total):
            if program.proc.poll() is None and state(program.pid) != "Z":
                os.kill(program.pid, signal.SIGKILL)
                wait_state(program.pid, "Z")

        with pytest.raises(CheckpointError, match="exited during the checkpoint"):
            checkpoint(program.pid, tmp_path / "gone.ckpt", progress=kill_it, stop=True)
    assert os.listdir(tmp_path) == []


def test_device_and_unknown_mappings_are_refused():
    device = MapsLine(0x1000, 0x2000, "rw-s", 0, "00:05", 7, "/dev/mem", vm_flags=0x4400)
    with pytest.raises(UnsupportedVma, match="device memory"):
        vma_kind(device)
    with pytest.raises(UnsupportedVma, match="special mapping"):
        vma_kind(MapsLine(0x1000, 0x2000, "r-xp", 0, "00:00", 0, "[uprobes]"))


# ----------------------------------------------------------------------------- --via

class RefusingDevice:
    """A stand-in /dev/crfs whose CHECKPOINT fails with `code` after writing a little."""

    code = errno.EOPNOTSUPP

    calls = []      # (pid, tree) of every CHECKPOINT asked of a stand-in

    def __init__(self, path):
        pass

    def checkpoint(self, pid, fd, tree=False):
        self.calls.append((pid, tree))
        os.write(fd, b"partial")
        raise kernel.KernelError(self.code, "refused by the stand-in")

    def snapshot(self, pid, fd, clones, resume_fd, spool_fd, tree=False):
        self.clones = dict(clones)
        return self.checkpoint(pid, fd, tree)

    def close(self):
        pass


class SnapshotDevice(RefusingDevice):
    """A stand-in /dev/crfs whose SNAPSHOT checks the clones it is given (stopped children
    of the stopped process), says the process may run on, and waits until it does."""

    seen = {}

    def snapshot(self, pid, fd, clones, resume_fd, spool_fd, tree=False):
        for process, clone in clones.items():
            self.seen[process] = {"clone": clone, "state": state(clone),
                                  "ppid": int(Path(f"/proc/{clone}/stat").read_text()
                                              .rsplit(")", 1)[1].split()[1])}
        self.seen["process_state"] = state(pid)
        os.eventfd_write(resume_fd, 1)
        deadline = time.monotonic() + 10
        while state(pid) in "tT" and time.monotonic() < deadline:
            time.sleep(0.01)
        self.seen["running"] = state(pid) not in "tT"
        return os.write(fd, b"image")


@pytest.fixture
def refusing_module(monkeypatch):
    monkeypatch.setattr(kernel, "available", lambda path=kernel.DEVICE: True)
    monkeypatch.setattr(kernel, "Device", RefusingDevice)
    monkeypatch.setattr(RefusingDevice, "calls", [])
    return RefusingDevice


def test_via_kernel_without_the_module_stops_nothing(build_c, tmp_path):
    if kernel.available():
        pytest.skip("/dev/crfs exists here")
    with Program(build_c("ckpt_counter", 64)) as program:
        with pytest.raises(CheckpointError, match="does not exist") as exc:
            checkpoint(program.pid, tmp_path / "k.ckpt", via="kernel")
        assert exc.value.errno == errno.ENODEV
        with pytest.raises(CheckpointError, match="ckpt format only"):
            checkpoint(program.pid, tmp_path / "k.ckpt", via="kernel", fmt="cr")
        with pytest.raises(CheckpointError, match="does not exist"):
            checkpoint(program.pid, tmp_path / "k.ckpt", via="kernel", tree=True)
        with pytest.raises(CheckpointError, match="via must be one of") as exc:
            checkpoint(program.pid, tmp_path / "k.ckpt", via="magic")
        assert exc.value.errno == errno.EINVAL
        assert state(program.pid) not in "tT"
        assert_continues(program)
    assert os.listdir(tmp_path) == []


def test_via_kernel_refusal_leaves_no_file(build_c, tmp_path, refusing_module):
    """SNAPSHOT refused (after the clone was made): no file, the process running,
    untraced, its clone gone (killed and reaped: no zombie child)."""
    with Program(build_c("ckpt_counter", 64)) as program:
        with pytest.raises(CheckpointError, match="refused by the stand-in") as exc:
            checkpoint(program.pid, tmp_path / "k.ckpt", via="kernel")
        assert exc.value.errno == errno.EOPNOTSUPP
        assert state(program.pid) not in "tT"
        assert_continues(program)
        assert procfs.children(program.pid) == []
    assert os.listdir(tmp_path) == []


def test_via_kernel_snapshot_lets_go_once_the_module_says_so(build_c, tmp_path,
                                                             monkeypatch):
    """The CLI's side of CRFS_IOC_SNAPSHOT against a stand-in module: it is given one
    clone, a stopped child of the stopped process; once told, crfs lets the process go
    while the call goes on, and then kills and reaps the clone: the report says snapshot,
    stopped for less than the whole checkpoint, and no child is left."""
    monkeypatch.setattr(kernel, "available", lambda path=kernel.DEVICE: True)
    monkeypatch.setattr(kernel, "Device", SnapshotDevice)
    monkeypatch.setattr(SnapshotDevice, "seen", {})
    with Program(build_c("ckpt_counter", 64)) as program:
        report = {}
        path = checkpoint(program.pid, tmp_path / "k.ckpt", via="kernel", report=report)
        seen = SnapshotDevice.seen
        assert seen[program.pid]["state"] in "tT" and seen[program.pid]["ppid"] == program.pid
        assert seen["process_state"] in "tT" and seen["running"]
        assert report["mode"] == "kernel" and report["snapshot"] is True
        assert report["frozen"] < report["time"]
        assert Path(path).read_bytes() == b"image"
        assert procfs.children(program.pid) == []
        assert state(program.pid) not in "tT"
        assert_continues(program)


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.ENOTTY, errno.EPERM])
def test_via_auto_falls_back_to_ptrace(build_c, tmp_path, refusing_module, monkeypatch, code):
    monkeypatch.setattr(RefusingDevice, "code", code)
    with Program(build_c("ckpt_counter", 64)) as program:
        path = checkpoint(program.pid, tmp_path / "a.ckpt", via="auto", after="stop")
        image = registry.open_image(path)
        try:
            assert image.tasks[0].pid == program.pid
        finally:
            image.close()
        assert_continues(program)
    assert os.listdir(tmp_path) == ["a.ckpt"]


def test_via_kernel_asks_the_module_for_the_tree(build_c, tmp_path, refusing_module):
    """--tree --via auto: the module is asked for the whole tree (CRFS_CHECKPOINT_TREE),
    with every process stopped; its refusal falls back to the userspace writer."""
    with Program(build_c("ckpt_fork", 64), 2) as program:
        pids = process_tree(program.pid)
        try:
            path = checkpoint(program.pid, tmp_path / "t.ckpt", via="auto", tree=True)
            assert RefusingDevice.calls == [(program.pid, True)]
            image = registry.open_image(path)
            try:
                assert [t.pid for t in image.tasks] == pids
            finally:
                image.close()
            assert_continues(program)
        finally:
            for pid in pids[1:]:
                os.kill(pid, signal.SIGKILL)


def test_via_auto_does_not_hide_output_errors(build_c, tmp_path, refusing_module,
                                              monkeypatch):
    monkeypatch.setattr(RefusingDevice, "code", errno.ENOSPC)
    with Program(build_c("ckpt_counter", 64)) as program:
        with pytest.raises(CheckpointError) as exc:
            checkpoint(program.pid, tmp_path / "a.ckpt", via="auto")
        assert exc.value.errno == errno.ENOSPC
        assert_continues(program)
    assert os.listdir(tmp_path) == []


def test_checkpoint_asks_the_module_by_default(build_c, tmp_path, refusing_module):
    """Without `via`, checkpoint() and checkpoint_into_store() (what the control file calls)
    ask a loaded module first, as `crfs checkpoint` does, and fall back on its refusal."""
    with Program(build_c("ckpt_counter", 64)) as program:
        checkpoint(program.pid, tmp_path / "d.ckpt")
        checkpoint_into_store(program.pid, tmp_path)
        assert RefusingDevice.calls == [(program.pid, False)] * 2
        assert_continues(program)
    assert len(os.listdir(tmp_path)) == 2


def test_cli_and_api_default_via_agree():
    from crfs import cli
    args = cli.build_parser().parse_args(["checkpoint", "1234"])
    for api in (checkpoint, checkpoint_into_store):
        assert inspect.signature(api).parameters["via"].default == args.via == "auto"


def crfs(*args, **kwargs):
    return subprocess.run(CRFS + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_cli_writes_into_a_store(build_c, tmp_path):
    with Program(build_c("ckpt_counter", 64)) as program:
        result = crfs("checkpoint", program.pid, "--store", tmp_path)
        assert result.returncode == 0, result.stderr
        path = result.stdout.strip()
        assert os.path.basename(path).startswith(f"ckpt_counter-m6-{program.pid}-")
        assert path.endswith("Z.ckpt") and os.path.exists(path)
        assert result.stderr == ""
        assert_continues(program)


@pytest.mark.parametrize("args, message", [
    (["999999999"], "no process with pid 999999999"),
    (["1234", "--format", "elf"], "invalid choice"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    result = crfs("checkpoint", *args, "-o", tmp_path / "x.ckpt")
    assert result.returncode in (1, 2) and message in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


def as_nobody(func):
    """func() run in a forked child with uid/gid 65534; returns what it returned or raised
    (as text)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            outcome = repr(func())
        except BaseException as exc:    # noqa: B036 - report anything to the parent
            outcome = f"{type(exc).__name__}: {exc}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(child, 0)
    return outcome


def test_no_permission_is_refused(build_c):
    out_dir = tempfile.mkdtemp()      # reachable by nobody, unlike pytest's tmp_path
    os.chmod(out_dir, 0o777)
    try:
        with Program(build_c("ckpt_counter", 64)) as program:
            outcome = as_nobody(lambda: checkpoint(program.pid, f"{out_dir}/x.ckpt"))
            assert outcome == (f"CheckpointError: not allowed to trace pid {program.pid} "
                               "(run as root, or as its owner with ptrace permitted)")
            assert os.listdir(out_dir) == []
            assert_continues(program)
    finally:
        shutil.rmtree(out_dir)


# ----------------------------------------------------------------------------- control file

def test_control_file_checkpoints_into_the_mounted_store(build_c, mount):
    with Program(build_c("ckpt_heap", 64), 1) as program:
        result = mount.sh(f"echo {program.pid} > checkpoint", check=False)
        assert result.returncode == 0, result.stderr
        names = [n for n in os.listdir(mount.path) if f"-{program.pid}-" in n]
        assert len(names) == 1 and names[0].startswith("ckpt_heap-m64-")
        task = task_dir(mount, names[0], program.pid)
        heap, size = program.ready["heap"], program.ready["size"]
        assert read_mem(task / "mem", heap, size) == pattern(size, 1)
        assert_continues(program)
    assert no_leftovers(mount.store)


def test_control_file_reports_errors_from_write(mount):
    # coreutils echo: dash's builtin says "I/O error" whatever write(2) returned
    result = mount.sh("/bin/echo 999999999 > checkpoint", check=False)
    assert result.returncode != 0 and "No such process" in result.stderr
    assert "checkpoint 999999999: no process with pid 999999999" in mount.log_text()
    result = mount.sh("/bin/echo hello > checkpoint", check=False)
    assert result.returncode != 0 and "Invalid argument" in result.stderr
    assert (mount.path / "checkpoint").stat().st_mode & 0o777 == 0o200
    assert no_leftovers(mount.store)


# ----------------------------------------------------------------------------- layers

def test_checkpoint_imports_no_upper_layer():
    """crfs.checkpoint sits on formats and model, beside crfs.fs: it imports neither the
    filesystem nor the CLI (what both share lives in crfs.store_paths, crfs.errors)."""
    import ast
    import crfs.checkpoint
    upper = ("crfs.fs", "crfs.cli", "crfs.mount", "crfs.demo", "crfs.__main__")
    package = os.path.dirname(crfs.checkpoint.__file__)
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name)) as source:
            tree = ast.parse(source.read(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            assert not [m for m in modules if m.startswith(upper)], f"{name}:{node.lineno}"


# ----------------------------------------------------------------------------- open files

def fd_truth(pid):
    """{fd: (readlink text, fdinfo pos, fdinfo flags)} of a stopped process."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with open(f"/proc/{pid}/fdinfo/{name}") as f:
            info = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        out[int(name)] = (os.readlink(f"/proc/{pid}/fd/{name}"), int(info["pos"]),
                          int(info["flags"], 8))
    return out


def pending_bytes(pid, fd):
    """The bytes buffered in `pid`'s pipe `fd`, read (and so consumed) by this process."""
    reader = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(reader, 65536)
    finally:
        os.close(reader)


def test_pipe_ends_no_process_holds(build_c, tmp_path):
    """pipe_flags says which end of a pipe no process had open: read from the captured
    fds when both ends are among them, else from every process's fds (here `sleep`,
    not checkpointed, holds the writer of the program's stdin)."""
    NO_READER, NO_WRITER = 1, 2
    stdin_r, stdin_w = os.pipe()
    holder = subprocess.Popen(["sleep", "60"], stdout=stdin_w)
    out = tmp_path / "out"
    with open(out, "w") as log:
        proc = subprocess.Popen([str(build_c("pipes_target", 64)), str(tmp_path), "600"],
                                stdin=stdin_r, stdout=log)
    os.close(stdin_r)
    os.close(stdin_w)
    try:
        deadline = time.monotonic() + 10
        while "tick" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        path = tmp_path / "pipes.ckpt"
        checkpoint(proc.pid, path, via="ptrace")
        image = registry.open_image(path)
        try:
            table = image.tasks[0].files
            flags = {fd: table.get(fd).file.pipe_flags for fd in (0, 3, 4, 5, 6, 7)}
        finally:
            image.close()
        assert flags == {0: 0, 3: NO_WRITER, 4: 0, 5: 0, 6: NO_WRITER, 7: NO_READER}
    finally:
        for p in (proc, holder):
            p.kill()
            p.wait()


def test_open_files_are_captured(build_c, tmp_path):
    O_CLOEXEC, O_APPEND, O_DIRECTORY = 0o2000000, 0o2000, 0o200000
    workdir = tmp_path / "files dir"
    workdir.mkdir()
    with Program(build_c("ckpt_files", 64), workdir) as program:
        fds = program.ready
        path = tmp_path / "files.ckpt"
        checkpoint(program.pid, path, after="stop", via="ptrace")
        wait_state(program.pid, "T")
        truth = fd_truth(program.pid)
        image = registry.open_image(path)
        try:
            table = image.tasks[0].files
            assert [d.fd for d in table.fds] == sorted(truth)
            for d in table.fds:
                link, pos, flags = truth[d.fd]
                assert d.file.link() == link if d.file.kind != "pipe" else \
                    link.startswith("pipe:[")
                assert (d.file.pos, d.file.flags, d.cloexec) == (
                    pos, flags & ~O_CLOEXEC, bool(flags & O_CLOEXEC)), d
            log = table.get(fds["log"]).file
            assert (log.kind, log.path, log.pos) == ("file", str(workdir / "log"), 12)
            assert log.flags & O_APPEND and table.get(fds["dup"]).file is log
            assert table.get(fds["null"]).file.path == "/dev/null"
            assert table.get(fds["null"]).file is not table.get(fds["cloexec"]).file
            assert table.get(fds["null"]).file is not table.get(fds["null2"]).file   # kcmp
            assert table.get(fds["cloexec"]).cloexec and not table.get(fds["null"]).cloexec
            assert table.get(fds["dir"]).file.flags & O_DIRECTORY
            reader, writer = table.get(fds["pr"]).file, table.get(fds["pw"]).file
            assert (reader.kind, writer.kind) == ("pipe", "pipe")
            assert reader.pipe == writer.pipe and reader is not writer
            assert (reader.data or writer.data).read() == b"0123456789"
            fifo = table.get(fds["fifo"]).file
            assert (fifo.kind, fifo.path, fifo.data.read()) == ("fifo", str(workdir / "fifo"),
                                                                b"abc")
            efd = table.get(fds["efd"]).file
            assert (efd.kind, efd.count) == ("eventfd", 5)
            sock = table.get(fds["sock"]).file
            assert sock.kind == "socket" and sock.link().startswith("socket:[")
            gone = table.get(fds["gone"]).file
            assert (gone.kind, gone.path, gone.pos, gone.data.read()) == (
                "deleted", f"{workdir / 'gone'} (deleted)", 4, b"data")
            timer = table.get(fds["tfd"]).file
            assert (timer.kind, timer.link(), timer.timer.clockid, timer.timer.interval_ns,
                    timer.timer.ticks) == ("timerfd", "anon_inode:[timerfd]", 1,
                                           2_500_000_000, 0)
            assert 990 * 10**9 < timer.timer.value_ns <= 1000 * 10**9
            sfd = table.get(fds["sfd"]).file
            assert (sfd.kind, sfd.sigmask) == ("signalfd", 1 << 9 | 1 << 11)
            ep = table.get(fds["ep"])
            assert (ep.file.kind, ep.file.link(), ep.cloexec) == (
                "epoll", "anon_inode:[eventpoll]", True)
            assert [(w.fd, w.file, w.events, w.data) for w in ep.file.watches] == [
                (fds["pr"], reader, 0x19, 0x1234), (fds["efd"], efd, 0x80000019, 7)]  # +ERR|HUP
            assert image.header["uflags"] & 0x8000      # CRFS_UFLAG_EXT: opaque files
        finally:
            image.close()
        # the buffered bytes were copied, not consumed
        assert pending_bytes(program.pid, fds["pr"]) == b"0123456789"
        assert pending_bytes(program.pid, fds["fifo"]) == b"abc"
        assert_continues(program)


def test_epoll_watch_of_a_closed_fd_is_found_with_kcmp(build_c, tmp_path):
    """An epoll whose watch was added as fd 50, since closed and reused by another pipe
    (zdtm epoll01): the first watch's target is found with kcmp(KCMP_EPOLL_TFD) as the
    read end still open at another fd (not its write end, of the same inode); both watches
    keep fd 50."""
    with Program(build_c("ckpt_epoll_closed", 64)) as program:
        fds = program.ready
        path = checkpoint(program.pid, tmp_path / "epoll.ckpt", after="stop", via="ptrace")
        image = registry.open_image(path)
        try:
            table = image.tasks[0].files
            ep = table.get(fds["ep"]).file
            assert ep.kind == "epoll", ep
            watches = {w.data: (w.fd, w.file) for w in ep.watches}
            assert watches == {0x50: (50, table.get(fds["ar"]).file),
                               0x51: (50, table.get(50).file)}
            assert table.get(fds["ar"]).file is not table.get(fds["aw"]).file
        finally:
            image.close()


def test_threads_and_a_forked_child_share_open_files(build_c, tmp_path):
    with Program(build_c("ckpt_fork", 64), 2) as program:
        path = checkpoint(program.pid, tmp_path / "fork.ckpt", tree=True, via="ptrace")
        image = registry.open_image(path)
        try:
            parent, child = [t for t in image.tasks if t.pid == t.tgid][:2]
            # stdout: the test's pipe, inherited: one open file description for both
            assert parent.files.get(1).file is child.files.get(1).file
            assert parent.files is not child.files
        finally:
            image.close()


def test_mount_shows_fds_as_proc_does(build_c, mount, tmp_path):
    """crfs checkpoint into the store, then the mount's fd/<n> read as /proc/<pid>/fd/<n>
    and fdinfo/<n> begins with /proc's pos: and flags: lines."""
    workdir = tmp_path / "mounted files"
    workdir.mkdir()
    with Program(build_c("ckpt_files", 64), workdir) as program:
        checkpoint(program.pid, mount.store / "files.ckpt", after="stop", via="ptrace")
        wait_state(program.pid, "T")
        task = task_dir(mount, "files.ckpt", program.pid)
        names = sorted(os.listdir(f"/proc/{program.pid}/fd"), key=int)
        assert sorted(os.listdir(task / "fd"), key=int) == names
        for name in names:
            link = os.readlink(f"/proc/{program.pid}/fd/{name}")
            shown = os.readlink(task / "fd" / name)
            assert shown == link or (link.startswith("pipe:[") and shown.startswith("pipe:["))
            with open(f"/proc/{program.pid}/fdinfo/{name}") as f:
                proc_lines = f.read().splitlines()[:2]
            assert (task / "fdinfo" / name).read_text().splitlines()[:2] == proc_lines
        with open(f"/proc/{program.pid}/fdinfo/{program.ready['sfd']}") as f:
            sigmask = [line for line in f if line.startswith("sigmask:")]
        assert sigmask and sigmask[0] in (task / "fdinfo" / str(program.ready["sfd"])
                                          ).read_text()
        listing = subprocess.run(["ls", "-l", str(task / "fd")], capture_output=True,
                                 text=True, check=True).stdout
        assert f"{program.ready['log']} -> {workdir / 'log'}" in listing
        assert_continues(program)
