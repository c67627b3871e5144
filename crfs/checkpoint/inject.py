"""What only a stopped thread can tell, asked of it with one injected syscall at a time:
its clear_child_tid (below) and parent-death signal (prctl(PR_GET_PDEATHSIG): no /proc file
shows it either), and for crfs.checkpoint.signals its signal handlers
(rt_sigaction), alternate signal stack (sigaltstack) and interval timers (getitimer) —
Injector.call() runs any syscall that writes its answer into a scratch area.

Why. clear_child_tid is the address the kernel zeroes and futex-wakes when the thread exits
(set by clone(CLONE_CHILD_CLEARTID) or set_tid_address(2)); glibc points it at the `tid`
word of the thread's descriptor, for every thread including the main one, and pthread_join
sleeps on that word until the kernel clears it. A restarted threaded process whose tasks
lack it hangs in pthread_join forever. No /proc file and no ptrace request shows it: only
the thread can ask, with prctl(PR_GET_TID_ADDRESS, &addr) (CONFIG_CHECKPOINT_RESTORE). CRIU
runs that prctl inside the task from injected parasite code (compel); this module does the
least of the same: one syscall instruction, single-stepped.

How, for one thread in a ptrace stop (the calling thread must be its ptracer):
  1. its registers were read (PTRACE_GETREGS) and are kept as they are;
  2. a syscall instruction (bytes 0f 05) is found in the process's [vdso], whose fallback
     paths hold several (found once per process);
  3. a scratch word is taken on the thread's stack, below the 128-byte red zone
     ((rsp - 256) & ~7, in private writable anonymous memory), and its 8 bytes saved;
  4. PTRACE_SETREGS: rip = that instruction, rax = SYS_prctl, rdi = PR_GET_TID_ADDRESS,
     rsi = the scratch word, orig_rax = -1 (so that the kernel's syscall-restart logic,
     which looks at orig_rax when the thread leaves its stop, leaves these alone);
  5. PTRACE_SINGLESTEP, and waitpid: the step over a syscall instruction ends in a SIGTRAP
     stop with rip just after it, rax = 0, the address in the scratch word;
  6. the scratch word is written back if it changed (PTRACE_POKEDATA), and the saved
     registers are put back exactly (PTRACE_SETREGS).

rseq. Leaving the stop at a rip outside the thread's rseq critical section makes the
kernel clear the rseq_cs pointer of its struct rseq (glibc registers one per thread). A
thread stopped inside a critical section would then miss its abort on the way back: so the
rseq_cs word (at the address PTRACE_GET_RSEQ_CONFIGURATION gives, + 8) is saved and put
back with the scratch word, and the thread is aborted to abort_ip when it runs on, as it
would have been without the injection.

A thread that was stopped inside a syscall (orig_rax >= 0, rax = -ERESTART*) gets back
exactly those registers: when it leaves the SIGTRAP stop (at detach, the SIGTRAP is not
delivered), the kernel applies the restart logic to them as it would have after our
PTRACE_INTERRUPT stop, and the syscall restarts; the program sees no EINTR.

Signals are not lost. If the step stops for another signal (one was queued, and the kernel
dequeued it before running the syscall), the registers are put back and that signal is kept
in `signals` (the freezer's tid -> signal dict), to be delivered at detach as if the thread
had stopped for it; clear_child_tid is then left 0. A thread that the freezer already found
at a signal-delivery stop (a signal in `signals`) is not stepped: resuming it would drop
that signal's siginfo, and a second signal could not be held. 32-bit (compat) threads are
not stepped either. In all these cases clear_child_tid is 0 in the image, as before.
"""

import ctypes
import errno
import os
import signal as signals_module

from crfs.checkpoint import ptrace
from crfs.formats.x86 import USER_CS, VmFlags

SYS_PRCTL = 157
PR_GET_PDEATHSIG = 2
PR_GET_TID_ADDRESS = 40
PR_GET_CHILD_SUBREAPER = 37
SYSCALL_INSN = b"\x0f\x05"
SYSCALL_INSN_SIZE = 2
SCRATCH_BELOW_RSP = 256      # beyond the 128-byte red zone of the x86_64 ABI
RSEQ_CS_OFFSET = 8           # struct rseq: u32 cpu_id_start, u32 cpu_id, u64 rseq_cs
WORD = 8
MAX_STEPS = 3                # tries when a trap is reported before the step itself
STEP_TIMEOUT = 5.0           # seconds for one syscall instruction to be stepped over


class Injector:
    """clear_child_tid of the stopped threads of one process. `mm` is its captured Mm (for
    the vDSO and the stack's mapping), `signals` the freezer's dict of signals to pass on."""

    def __init__(self, pid, mm, signals):
        self.pid = pid
        self.mm = mm
        self.signals = signals
        self._syscall = None      # address of a syscall instruction; 0 when there is none

    def clear_child_tid(self, tid, regs):
        """The thread's clear_child_tid (0 when it is 0 or cannot be asked safely, see the
        module's docstring). `regs` are its registers now; they are left as they were.
        OSError(ESRCH) if the thread exits meanwhile."""
        out = self.call(tid, regs, SYS_PRCTL, lambda scratch: (PR_GET_TID_ADDRESS, scratch))
        return int.from_bytes(out, "little") if out else 0

    def pdeath_signal(self, tid, regs):
        """The thread's parent-death signal, prctl(PR_GET_PDEATHSIG) (0 when none or when
        it cannot be asked safely, as clear_child_tid)."""
        out = self.call(tid, regs, SYS_PRCTL, lambda scratch: (PR_GET_PDEATHSIG, scratch))
        return int.from_bytes(out[:4], "little") if out else 0

    def child_subreaper(self, tid, regs):
        """Whether the thread's process is a child subreaper, prctl(PR_GET_CHILD_SUBREAPER)
        as CRIU asks it (no /proc file shows it); False when it cannot be asked safely."""
        out = self.call(tid, regs, SYS_PRCTL,
                        lambda scratch: (PR_GET_CHILD_SUBREAPER, scratch))
        return bool(int.from_bytes(out[:4], "little")) if out else False

    def call(self, tid, regs, number, arguments, size=WORD):
        """The `size` bytes (a multiple of 8) the thread's syscall `number` wrote into a
        scratch area of its stack, `arguments(scratch address)` giving its arguments (rdi,
        rsi, rdx, r10); None when the syscall failed or could not be run safely (see the
        module's docstring: the same steps, with a scratch area of `size` bytes). `regs`
        are its registers now; they and the scratch bytes are left as they were."""
        return self.calls(tid, regs, [(number, arguments)], size)[0]

    def calls(self, tid, regs, requests, size=WORD):
        """call() for each (number, arguments) of `requests` in turn, with one scratch area
        of `size` bytes saved before the first and put back after the last (and the rseq_cs
        word likewise): a list of the answers, None for each from the first that failed or
        could not be run safely on."""
        answers = [None] * len(requests)
        if regs["cs"] != USER_CS["x86_64"] or self.signals.get(tid, 0):
            return answers
        insn = self.syscall_address()
        scratch = (regs["rsp"] - SCRATCH_BELOW_RSP - size) & ~(WORD - 1)
        if not insn or not self._private_writable(scratch, size):
            return answers
        rseq = ptrace.get_rseq(tid)
        saved = self._read(scratch, size)
        saved_rseq = self._read_word(rseq + RSEQ_CS_OFFSET) if rseq else 0
        if saved is None or saved_rseq is None:
            return answers
        try:
            for i, (number, arguments) in enumerate(requests):
                registers = dict(zip(("rdi", "rsi", "rdx", "r10"), arguments(scratch)))
                ptrace.set_regs(tid, {**regs, "rip": insn, "rax": number, "orig_rax": -1,
                                      **registers})
                after = self._step(tid, insn)
                if after is None or after["rax"] != 0:
                    break
                answers[i] = self._read(scratch, size)
                if answers[i] is None:
                    break
        finally:
            self._put_back(tid, scratch, saved, answers)
            if rseq and self._read_word(rseq + RSEQ_CS_OFFSET) != saved_rseq:
                ptrace.poke(tid, rseq + RSEQ_CS_OFFSET, saved_rseq)
            ptrace.set_regs(tid, regs)
        return answers

    def _put_back(self, tid, scratch, saved, answers):
        """Write back each word of the scratch area that differs from `saved`."""
        now = answers[-1] if answers[-1] is not None else self._read(scratch, len(saved))
        for offset in range(0, len(saved), WORD):
            word = saved[offset:offset + WORD]
            if now is None or now[offset:offset + WORD] != word:
                ptrace.poke(tid, scratch + offset, int.from_bytes(word, "little"))

    def syscall(self, tid, regs, number, arguments):
        """rax (the result, -errno on failure) after the thread ran syscall `number` with
        `arguments` (rdi, rsi, rdx, r10, r8, r9); None when it could not be run safely (as call(),
        without a scratch area). Its registers and rseq_cs word are left as they were."""
        if regs["cs"] != USER_CS["x86_64"] or self.signals.get(tid, 0):
            return None
        insn = self.syscall_address()
        if not insn:
            return None
        rseq = ptrace.get_rseq(tid)
        saved = {rseq + RSEQ_CS_OFFSET: self._read_word(rseq + RSEQ_CS_OFFSET)} if rseq else {}
        if None in saved.values():
            return None
        registers = dict(zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), arguments))
        ptrace.set_regs(tid, {**regs, "rip": insn, "rax": number, "orig_rax": -1,
                              **registers})
        try:
            after = self._step(tid, insn)
            if after is None:
                return None
            rax = after["rax"]
            return rax - (1 << 64) if rax >= 1 << 63 else rax
        finally:
            for address, word in saved.items():
                if self._read_word(address) != word:
                    ptrace.poke(tid, address, word)
            ptrace.set_regs(tid, regs)

    def syscall_address(self):
        """Address of bytes 0f 05 in the [vdso] (0 when there is no vDSO or none in it)."""
        if self._syscall is None:
            self._syscall = 0
            vdso = next((v for v in self.mm.vmas if v.kind == "vdso"), None)
            if vdso is not None:
                code = self._read(vdso.start, vdso.size)
                at = code.find(SYSCALL_INSN) if code else -1
                if at >= 0:
                    self._syscall = vdso.start + at
        return self._syscall

    def _private_writable(self, address, size=WORD):
        vma = self.mm.vma_at(address)
        return (vma is not None and vma.vm_flags & VmFlags.VM_WRITE and vma.kind == "anon"
                and address + size <= vma.end)

    def _step(self, tid, insn):
        """Step over the syscall instruction: the thread's registers when it stopped right
        after it, else None. Another signal's stop: the signal goes into `signals`, None."""
        for _ in range(MAX_STEPS):
            ptrace.singlestep(tid)
            status, late = self._wait(tid)
            if not os.WIFSTOPPED(status):
                raise OSError(errno.ESRCH, f"task {tid} exited")
            if status >> 16:            # an event stop: a pending trap, or our interrupt
                if late and ptrace.get_regs(tid)["rip"] == insn:
                    return None         # the syscall did not run: give up
                continue                # step on (after the syscall: to take its SIGTRAP)
            number = os.WSTOPSIG(status)
            if number == signals_module.SIGTRAP:
                regs = ptrace.get_regs(tid)
                if regs["rip"] == insn + SYSCALL_INSN_SIZE:
                    return regs         # the step's SIGTRAP: dropped at detach
            self.signals[tid] = number  # dequeued before the syscall ran: deliver at detach
            return None
        return None

    def _wait(self, tid):
        """(waitpid status of the stop ending the step, late). A step that does not end in
        time (the thread was frozen by a cgroup, say) is interrupted, so that its registers
        can still be put back: late is then True and the status is of that stop."""
        try:
            return ptrace.wait_status(tid, STEP_TIMEOUT), False
        except OSError as exc:
            if exc.errno != errno.ETIMEDOUT:
                raise
        ptrace.interrupt(tid)
        return ptrace.wait_status(tid), True

    def _read_word(self, address):
        data = self._read(address, WORD)
        return int.from_bytes(data, "little") if data else None

    def _read(self, address, size):
        """`size` bytes of the process at `address`, None if they cannot all be read."""
        buffer = ctypes.create_string_buffer(size)
        try:
            done = ptrace.read_memory(self.pid, buffer, [(address, size)])
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise
            return None
        return buffer.raw if done == size else None
