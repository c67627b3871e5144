"""Snapshot checkpoints: the processes are stopped only while a copy-on-write copy of each
is made; the image is written from the copies while the processes run on.

The copy is a child made inside the process by one injected syscall (inject.py):
clone(CLONE_FS | CLONE_FILES | CLONE_SYSVSEM, exit signal 0, same stack). The kernel
copies the page tables (about 2 ms per GiB), marking private pages copy-on-write, so the
child's memory stays what the process's was at that instant, whatever the process writes
later. PTRACE_O_TRACECLONE is set on the injecting thread first: the child is attached to
crfs from its creation and stopped before its first instruction; it never runs. It shares
the process's file table (no descriptor is duplicated, nothing held open) and gets no exit
signal (the process gets no SIGCHLD). Its memory is read by process_vm_readv.

What a fork does not copy-on-write is copied while the processes are stopped: shared
mappings (the child would see later writes), VM_DONTCOPY (not in the child) and
VM_WIPEONFORK (zeros in the child).

Afterwards the child is killed and crfs, its tracer, waits for it; its real parent, the
process, would then hold it as a zombie (an exit signal of 0 does not reap), so crfs stops
the process again for one injected waitid(P_PID, child, NULL, WEXITED | __WALL). Nothing is
left: no signal, no zombie, no descriptor.

Not possible (then the checkpoint falls back to stopping the processes for the whole write,
"--stop"): 32-bit processes, a process without a vDSO, every thread holding a signal.
"""

import os
import signal
from bisect import bisect_right

from crfs.checkpoint import capture, clones, inject, procfs, ptrace, signals, tracking
from crfs.checkpoint.freezer import Freezer
from crfs.checkpoint.memory import ProcessMemory
from crfs.checkpoint.procfs import FlagsChanged
from crfs.errors import CrfsError
from crfs.formats.ckpt import CRFS_UFLAG_SNAPSHOT  # noqa: F401 (api.py marks images with it)
from crfs.formats.x86 import PAGE_SIZE

HELD = 1 << 63 | 1 << 62      # pagemap: present or swapped

class SnapshotMemory(ProcessMemory):
    """The pages of the copy-on-write child, and those copied while frozen."""

    def __init__(self, child, runs, copied, on_read):
        super().__init__(child, tracking.subtract(runs, sorted(copied)), on_read)
        self.copied = sorted((first, stop, data) for (first, stop), data in copied.items())
        self._copied_starts = [first for first, _, _ in self.copied]

    def _readv(self, ranges, size):
        """As ProcessMemory's, from /proc/<child>/mem: process_vm_readv pins the pages, and
        pinning a page shared copy-on-write makes the kernel copy it (unshare) first, a
        copy of the whole snapshot; reads of /proc/<pid>/mem do not pin."""
        data = bytearray(size)
        view = memoryview(data)
        done = 0
        try:
            fd = self._mem()
            for address, length in ranges:
                got = os.preadv(fd, [view[done:done + length]], address)
                done += got
                if got < length:
                    break
        except OSError:
            pass
        finally:
            view.release()
        return data, done

    def _mem(self):
        if self._mem_fd is None:
            self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        return self._mem_fd

    def pread(self, offset, length):
        i = bisect_right(self._copied_starts, offset) - 1
        if i >= 0 and offset + length <= self.copied[i][1]:
            first, _, data = self.copied[i]
            self._count(length)
            return data[offset - first:offset - first + length]
        return super().pread(offset, length)


class Snapshot:
    def __init__(self):
        self.children = {}       # pid -> its copy-on-write child
        self.mms = {}
        self._later = {}         # pid -> (VMAs whose pages are read later, runs, copied)
        self._early = {}         # pid -> smaps lines read before the freeze, or None

    def take(self, image, freezer):
        """While `freezer` holds the processes: a child per process, each Mm's source set
        to read it. False (and nothing left) when one cannot be made."""
        for task in image.tasks:
            if task.mm is not None and task.tgid not in self.mms:
                self.mms[task.tgid] = task.mm
        for pid, mm in self.mms.items():
            child = clones.make_clone(pid, mm, freezer)
            if child is None:
                self.release(frozen=freezer)
                return False
            self.children[pid] = child
        for pid, mm in self.mms.items():
            copied = _copy_now(pid, self.children[pid], mm)
            source = mm.source
            self._later[pid] = (getattr(source, "later", []), source.runs, copied)
            self._early[pid] = getattr(source, "early", None)
            source.close()
            mm.source = SnapshotMemory(self.children[pid], source.runs, copied,
                                       source.on_read)
        return True

    def check_early(self):
        """Raise FlagsChanged unless the VmFlags read before the freeze (capture.early_maps)
        were those at the snapshot: the child's VMAs are the process's as they were then
        (a fork copies every VMA and its flags but those not copied at all, VM_DONTCOPY, and
        clears VM_LOCKED, which early_maps checked against VmLck)."""
        for pid, early in self._early.items():
            if early is None:
                continue
            now = {(line.start, line.end): line for line in procfs.maps(self.children[pid])}
            for line in early:
                child = now.pop((line.start, line.end), None)
                if line.vm_flags & procfs.VM_DONTCOPY:
                    ok = child is None
                else:
                    ok = (child is not None and child.dontfork == line.dontfork
                          and child.vm_flags | procfs.VM_LOCKED
                          == line.vm_flags | procfs.VM_LOCKED)
                if not ok:
                    raise FlagsChanged(f"pid {pid}: VMA {line.start:#x}-{line.end:#x} "
                                       f"changed its flags as it was stopped")
            if now:
                raise FlagsChanged(f"pid {pid}: a VMA appeared as it was stopped")

    def add_later_pages(self):
        """Once the processes run again: the pages of the VMAs whose pagemap the capture
        left for later (capture.capture_mm), from each child's pagemap. A fork copies the
        page table entries of private memory (not DONTFORK or WIPEONFORK), so the child
        has exactly the pages the process had at the snapshot."""
        for pid, (later, runs, copied) in self._later.items():
            added = capture.add_later_pages(later, self.children[pid])
            if added:
                mm = self.mms[pid]
                on_read = mm.source.on_read
                mm.source.close()
                mm.source = SnapshotMemory(self.children[pid], sorted(runs + added), copied,
                                           on_read)
        self._later.clear()

    def read_handlers(self, image):
        """Once the processes run again: the signal handlers of each process, read from its
        child. A clone without CLONE_SIGHAND copies the handlers, so the child, which never
        runs, holds them as they were at the snapshot (64 rt_sigaction injected into it,
        not into the process). The scratch words the injection uses on the child's stack
        are put back, so its memory stays the snapshot's. None (not stored) if a child
        cannot be asked."""
        for pid, child in self.children.items():
            tasks = [t for t in image.tasks if t.tgid == pid]
            injector = inject.Injector(child, self.mms[pid], {})
            signals.set_handlers(tasks, signals.sighand(child, injector))

    def release(self, after="detach", frozen=None):
        """Kill the children; reap them in their parents (stopped again for it, unless
        `frozen`, the freezer holding them still)."""
        for child in self.children.values():
            try:
                os.kill(child, signal.SIGKILL)
                ptrace.wait_status(child)
            except OSError:
                pass
        if after == "kill":
            return                 # the processes are gone: init reaps the children
        for pid, child in self.children.items():
            if frozen is not None:
                clones.reap(pid, child, self.mms[pid], frozen)
            else:
                _reap_in(pid, child, self.mms[pid])
        self.children.clear()


def _copy_now(pid, child, mm):
    """{(first, stop): bytes} of the dumped pages the child does not hold copy-on-write,
    read now from the process: shared mappings (the child would see later writes), and the
    private VMAs whose first dumped page the child's pagemap shows absent: a VM_DONTCOPY
    area is not in the child, a VM_WIPEONFORK one is empty, and a fork copies every other
    present or swapped page table entry (so one entry per VMA tells)."""
    need, seen = [], {}
    fd = os.open(f"/proc/{child}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for first, stop in mm.source.runs:
            vma = mm.vma_at(first)
            if vma is None or vma.kind == "vdso":
                continue
            if vma.kind != "shm-anon":
                if id(vma) not in seen:
                    entry = os.pread(fd, 8, first // PAGE_SIZE * 8)
                    seen[id(vma)] = int.from_bytes(entry, "little") & HELD == 0
                if not seen[id(vma)]:
                    continue
            need.append((first, stop))
    finally:
        os.close(fd)
    reader = ProcessMemory(pid, need)
    try:
        return {(first, stop): bytes(reader.read(first, stop - first)) for first, stop in need}
    finally:
        reader.close()


def _reap_in(pid, child, mm):
    """Stop process `pid` again, have it reap `child` (waitid), let it go as it was."""
    freezer = Freezer()
    try:
        freezer.freeze(pid, False)
        clones.reap(pid, child, mm, freezer)
    except (OSError, CrfsError):
        pass                       # it exited meanwhile: nothing left to reap in it
    finally:
        freezer.thaw("detach")
