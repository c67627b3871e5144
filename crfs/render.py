"""Text views of the model as users know them: /proc maps and status, gdb register names.

Shared by the CLI and the filesystem so both print the same bytes.
"""

from crfs.formats.common import dev_text, encode_text
from crfs.formats.x86 import PAGE_SIZE, VmFlags
from crfs.model.image import NSIG, RLIM_INFINITY, SIG_DFL, SIG_IGN


# /proc/<pid>/status letters for the task state bits the images store.
TASK_STATES = ((0x0, "R (running)"), (0x1, "S (sleeping)"), (0x2, "D (disk sleep)"),
               (0x4, "T (stopped)"), (0x8, "t (tracing stop)"), (0x10, "X (dead)"),
               (0x20, "Z (zombie)"))


def perms(vma):
    f = vma.vm_flags
    return "".join((
        "r" if f & VmFlags.VM_READ else "-",
        "w" if f & VmFlags.VM_WRITE else "-",
        "x" if f & VmFlags.VM_EXEC else "-",
        "s" if f & VmFlags.VM_SHARED else "p",
    ))


def vma_name(vma, mm):
    """The path column of /proc/<pid>/maps, named as the kernel names special areas."""
    if vma.file:
        return vma.file
    if vma.kind in ("vdso", "vvar"):
        return f"[{vma.kind}]"
    fields = mm.fields
    start_brk, brk = fields.get("start_brk"), fields.get("brk")
    if start_brk is not None and brk is not None and vma.start <= brk and vma.end >= start_brk \
            and vma.kind == "anon":
        return "[heap]"
    stack = fields.get("start_stack")
    if stack is not None and vma.start <= stack < vma.end:
        return "[stack]"
    if vma.kind == "shm-anon":
        return "/dev/zero (deleted)"
    return ""


def maps_line(vma, mm, arch):
    """One line of /proc/<pid>/maps (show_map_vma's format and padding)."""
    # Dev and inode of a mapped file where the image recorded them (CRFS_FILE_ID), else
    # 00:00 0 as the kernel prints for anonymous memory.
    file_id = vma.file_id
    dev, ino = (dev_text(file_id.dev), file_id.ino) if file_id else ("00:00", 0)
    line = (f"{vma.start:08x}-{vma.end:08x} {perms(vma)} {vma.pgoff * PAGE_SIZE:08x} "
            f"{dev} {ino} ")
    name = vma_name(vma, mm)
    if name:
        pointer_size = 8 if arch == "x86_64" else 4
        line = line.ljust(25 + pointer_size * 6 - 1) + " " + name
    return line + "\n"


def maps(mm, arch):
    return "".join(maps_line(v, mm, arch) for v in mm.vmas)


def vma_dirname(vma):
    """The address column of maps: names the VMA's directory."""
    return f"{vma.start:08x}-{vma.end:08x}"


def state_text(state):
    if state is None:
        return None
    for bit, text in reversed(TASK_STATES):
        if bit and state & bit:
            return text
    return TASK_STATES[0][1]


def status(task):
    """/proc/<pid>/status lines for the fields the image has, in /proc's order and format.
    SigQ is not shown: its count is of the whole user's queued signals."""
    lines = [f"Name:\t{task.comm}"]
    if task.fs is not None and task.fs.umask is not None:
        lines.append(f"Umask:\t{task.fs.umask:04o}")
    state = state_text(task.state)
    if state:
        lines.append(f"State:\t{state}")
    lines += [f"Tgid:\t{task.tgid}", f"Pid:\t{task.pid}", f"PPid:\t{task.ppid}"]
    creds = task.creds
    if creds:
        lines.append("Uid:\t" + "\t".join(str(getattr(creds, k))
                                         for k in ("uid", "euid", "suid", "fsuid")))
        lines.append("Gid:\t" + "\t".join(str(getattr(creds, k))
                                         for k in ("gid", "egid", "sgid", "fsgid")))
        if creds.groups is not None:
            lines.append("Groups:\t" + "".join(f"{g} " for g in creds.groups))
    if task.misc is not None and task.mm is not None:
        lines.append(f"THP_enabled:\t{0 if task.misc.thp_disable else 1}")
    lines += _signal_status(task.signals)
    if creds:
        lines += [f"{key}:\t{value:016x}" for key, value in (
            ("CapInh", creds.cap_inh), ("CapPrm", creds.cap_prm), ("CapEff", creds.cap_eff),
            ("CapBnd", creds.cap_bnd), ("CapAmb", creds.cap_amb)) if value is not None]
        if creds.no_new_privs is not None:
            lines.append(f"NoNewPrivs:\t{creds.no_new_privs}")
    if task.seccomp:
        lines.append(f"Seccomp:\t{task.seccomp}")
    return "\n".join(lines) + "\n"


def rseq(registration):
    """The task's rseq registration, as PTRACE_GET_RSEQ_CONFIGURATION gives it."""
    return (f"address\t{registration.addr:#x}\nsize\t{registration.length}\n"
            f"signature\t{registration.sig:#x}\n")


def sched(task):
    """Its scheduling as /proc/PID/stat shows it (policy, rt_priority, nice: fields 41, 40,
    19), a process's exit_signal (38) and whether it is a child subreaper."""
    m = task.misc
    text = f"policy\t{m.policy}\nrt_priority\t{m.rt_priority}\nnice\t{m.nice}\n"
    if task.pid == task.tgid:
        text += f"exit_signal\t{task.exit.signal}\nchild_subreaper\t{int(m.child_subreaper)}\n"
    return text


NOTIFY_NAMES = {0: "signal", 1: "none"}


def posix_timers(timers, tgid):
    """The process's POSIX timers as /proc/PID/timers lists them (by increasing id), each
    with what timer_gettime gave: value (time left, ns), interval, overrun, and whether its
    signal was queued."""
    out = []
    for t in timers:
        how = NOTIFY_NAMES.get(t.notify & ~4, str(t.notify & ~4))
        target = f"tid.{t.notify_tid}" if t.notify & 4 else f"pid.{tgid}"
        out.append(f"ID: {t.id}\nsignal: {t.signo}/{t.sigev_value:016x}\n"
                   f"notify: {how}/{target}\nClockID: {t.clockid}\n"
                   f"value_ns: {t.value_ns}\ninterval_ns: {t.interval_ns}\n"
                   f"overrun: {t.overrun}\npending: {int(t.pending)}\n")
    return "".join(out)


def exit_status(exit):
    """How a zombie ended, as its parent's wait() will tell: exited N or killed by SIG."""
    code = exit.code
    if code & 0x7F:
        text = f"killed {signal_name(code & 0x7F)}{' (core dumped)' if code & 0x80 else ''}"
    else:
        text = f"exited {code >> 8 & 0xFF}"
    return f"{text}\nstatus\t{code:#x}\nexit_signal\t{exit.signal}\n"


def _signal_status(signals):
    if signals is None:
        return []
    lines = [f"SigPnd:\t{signals.pending.mask:016x}"]
    if signals.group is not None:
        lines.append(f"ShdPnd:\t{signals.group.shared_pending.mask:016x}")
    lines.append(f"SigBlk:\t{signals.blocked:016x}")
    if signals.handlers is not None:
        ignored = caught = 0
        for number, action in enumerate(signals.handlers.actions, start=1):
            if action.handler == SIG_IGN:
                ignored |= 1 << (number - 1)
            elif action.handler != SIG_DFL:
                caught |= 1 << (number - 1)
        lines += [f"SigIgn:\t{ignored:016x}", f"SigCgt:\t{caught:016x}"]
    return lines


# Signal names of x86 Linux; 32 and up are real-time signals, SIGRTMIN (32) + n.
SIGNAL_NAMES = ("HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM "
                "STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR "
                "SYS").split()


def signal_name(number):
    if number <= len(SIGNAL_NAMES):
        return "SIG" + SIGNAL_NAMES[number - 1]
    return "SIGRTMIN" if number == 32 else f"SIGRTMIN+{number - 32}"


def signals(handlers):
    """One line per signal: number, name, handler (SIG_DFL, SIG_IGN or its address),
    SA_* flags, the mask blocked while it runs (as /proc prints sigsets)."""
    lines = []
    for number, action in enumerate(handlers.actions[:NSIG], start=1):
        handler = {SIG_DFL: "SIG_DFL", SIG_IGN: "SIG_IGN"}.get(action.handler,
                                                               f"{action.handler:#x}")
        lines.append(f"{number}\t{signal_name(number)}\t{handler}\tflags {action.flags:#x}"
                     f"\tmask {action.mask:016x}\n")
    return "".join(lines)


# /proc/<pid>/limits: name and unit of each RLIMIT_* (fs/proc/base.c lnames[]).
LIMITS = (("Max cpu time", "seconds"), ("Max file size", "bytes"),
          ("Max data size", "bytes"), ("Max stack size", "bytes"),
          ("Max core file size", "bytes"), ("Max resident set", "bytes"),
          ("Max processes", "processes"), ("Max open files", "files"),
          ("Max locked memory", "bytes"), ("Max address space", "bytes"),
          ("Max file locks", "locks"), ("Max pending signals", "signals"),
          ("Max msgqueue size", "bytes"), ("Max nice priority", None),
          ("Max realtime priority", None), ("Max realtime timeout", "us"))


def limits(rlimits):
    """/proc/<pid>/limits, as proc_pid_limits() prints it."""
    def value(v):
        return "unlimited" if v == RLIM_INFINITY else str(v)

    out = [f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}\n"]
    for (name, unit), (soft, hard) in zip(LIMITS, rlimits):
        line = f"{name:<25} {value(soft):<20} {value(hard):<20} "
        out.append(line + (f"{unit:<10}\n" if unit else "\n"))
    return "".join(out)


def regs(registers):
    """One register a line, "<name> 0x<hex>", gdb's names and order."""
    return "".join(f"{name} {value:#x}\n" for name, value in registers.items())


def record_line(rec):
    """One line of `crfs records`: file offset, C type name, length, note."""
    note = f"  {rec.note}" if rec.note else ""
    return f"{rec.offset:#010x}  {rec.name:<24} {rec.length}{note}\n"


def quoted(text):
    """`text` quoted as Python shows bytes: its stored bytes, not decoding artefacts."""
    return repr(encode_text(text))[1:]


def key_values(mapping):
    return "".join(f"{key}: {value}\n" for key, value in mapping.items())


def vma_info(vma):
    info = {"kind": vma.kind, "start": f"{vma.start:#x}", "end": f"{vma.end:#x}",
            "vm_flags": f"{vma.vm_flags:#x}", "prot": f"{vma.prot:#x}", "pgoff": vma.pgoff,
            "file": vma.file or "", "pages dumped": len(vma.pages)}
    if vma.shm is not None:
        info["shm segment"] = vma.shm.objref
        info["shm size"] = vma.shm.size
    if vma.file_id is not None:
        file_id = vma.file_id
        info.update({"file dev": dev_text(file_id.dev), "file inode": file_id.ino,
                     "file size": file_id.size, "file mtime_ns": file_id.mtime_ns})
    if vma.native is not None:
        info.update(vma.native.shown())
    return key_values(info)


def header(image):
    lines = {"format": image.description}
    lines.update(image.header)
    return key_values(lines)


O_CLOEXEC = 0o2000000


def fdinfo(fd):
    """/proc/PID/fdinfo/N of an Fd: position and flags (close-on-exec included, as the
    kernel shows it), and the lines of an eventfd, timerfd, signalfd or epoll (its "tfd:"
    lines without ino and sdev), and crfs's lines of a UNIX socket (type, state, peer
    inode, shutdown bits, messages and bytes queued); mnt_id and ino are not in the
    images."""
    file = fd.file
    text = f"pos:\t{file.pos}\nflags:\t0{file.flags | (O_CLOEXEC if fd.cloexec else 0):o}\n"
    if file.kind == "eventfd" and file.count is not None:
        text += f"eventfd-count: {file.count:16x}\n"
    elif file.kind == "timerfd" and file.timer is not None:
        t = file.timer
        text += (f"clockid: {t.clockid}\nticks: {t.ticks}\nsettime flags: 0{t.flags:o}\n"
                 f"it_value: ({t.value_ns // 10**9}, {t.value_ns % 10**9})\n"
                 f"it_interval: ({t.interval_ns // 10**9}, {t.interval_ns % 10**9})\n")
    elif file.kind == "signalfd" and file.sigmask is not None:
        text += f"sigmask:\t{file.sigmask:016x}\n"
    elif file.kind == "socket" and file.sock is not None:
        s = file.sock       # crfs's lines: the kernel shows none for a socket
        text += (f"unix-type:\t{s.type}\nunix-state:\t{s.state}\nunix-peer:\t{s.peer}\n"
                 f"unix-shutdown:\t{s.shutdown}\nunix-queued:\t{len(s.msgs)} "
                 f"{sum(s.msgs)}\n")
        if s.name:
            text += f"unix-name:\t{s.name.decode('utf-8', 'backslashreplace')}\n"
        if s.state == 10:
            text += f"unix-backlog:\t{s.backlog}\n"
        if s.icon:
            text += "unix-accepted:\tno\n"     # unix-peer: its listener
        if s.mode:
            text += f"unix-file:\t0{s.mode:o} {s.uid} {s.gid}\n"
    elif file.kind == "epoll" and file.watches is not None:
        text += "".join(f"tfd: {w.fd:8d} events: {w.events:8x} data: {w.data:16x}  "
                        f"pos:{w.file.pos}\n" for w in file.watches)
    return text + _owner_lines(file)


F_OWNER_TYPES = {0: "tid", 1: "pid", 2: "pgrp"}


def _owner_lines(file):
    """crfs's own fdinfo lines for a file with an owner (F_SETOWN_EX) or a signal
    (F_SETSIG), which /proc does not show: "crfs-owner: pid 42", "crfs-signum: 29"."""
    native = file.native
    pid = getattr(native, "owner_pid", None)
    if pid is None:
        return ""
    kind = F_OWNER_TYPES.get(native.owner_type, str(native.owner_type))
    return f"crfs-owner:\t{kind} {pid}\ncrfs-signum:\t{native.signum}\n"
