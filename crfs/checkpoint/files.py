"""The open files of stopped processes: /proc/PID/fd, /proc/PID/fdinfo, stat and kcmp.

Every fd becomes an Fd of the process's FdTable pointing at an OpenFile, which is shared by
every fd of any captured process that refers to the same open file description (fds with
the same inode are compared with kcmp(2) KCMP_FILE). Regular files, directories and devices
are kept by path with flags and position; pipes and FIFOs with the bytes buffered in them,
copied with tee(2) without consuming them; eventfds with their count, timerfds with their
timer, signalfds with their mask, epolls with their watch list (all from fdinfo). Files
crfs cannot restore (sockets, other anon inodes) are kept as their kind and the text /proc
shows for them; regular files deleted while open (no link left; memfds too) with their
content when it can be read and is at most MAX_DELETED_CONTENT bytes, else like those;
symlinks deleted while an O_PATH fd holds them, with their target. Deleted files keep their
stat mode and owner (CkptFileFields) for the restart to give back.
"""

import ctypes
import errno
import fcntl
import os
import re
import stat
import termios
from dataclasses import dataclass, field
from typing import Optional

from crfs.checkpoint import procfs
from crfs.checkpoint.sockets import capture_unix
from crfs.errors import Unsupported
from crfs.formats.ckpt import CRFS_PIPE_NO_READER, CRFS_PIPE_NO_WRITER
from crfs.model.ckpt_load import CkptFileFields
from crfs.model.image import Blob, EpollWatch, Fd, FdTable, FdTimer, FileId, OpenFile

O_ACCMODE = 0o3
O_CLOEXEC = 0o2000000
FMODE_READ, FMODE_WRITE = 0x1, 0x2
FMODE_SEEK = 0x1c           # FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE
SEEKABLE = ("reg", "dir", "blk", "deleted")
ACC_FMODE = {0: FMODE_READ, 1: FMODE_WRITE, 2: FMODE_READ | FMODE_WRITE, 3: 0}
MAX_FDS = 1 << 20           # fds of one process (fs.nr_open default)
SYS_KCMP = 312              # x86_64
KCMP_FILE = 0
KCMP_EPOLL_TFD = 7
F_GETPIPE_SZ, F_SETPIPE_SZ = 1032, 1031
SPLICE_F_NONBLOCK = 0x2
SYS_PIDFD_GETFD = 438       # x86_64
# Deleted files up to this size are saved with their content (held in memory until written).
MAX_DELETED_CONTENT = 64 << 20
ANON_KINDS = ("eventfd", "timerfd", "signalfd")     # anon inodes saved with their state

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.tee.restype = ctypes.c_ssize_t
_libc.tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)


class PipeCopyError(Unsupported):
    """The bytes buffered in a pipe could not be copied."""


@dataclass
class Registry:
    """The open files met so far in one checkpoint, across its processes."""
    by_inode: dict = field(default_factory=dict)    # (dev, ino) -> [(pid, fd, OpenFile)]
    pipes: dict = field(default_factory=dict)       # (kind, ino) -> pipe size
    pipe_files: dict = field(default_factory=dict)  # pipe ino -> [OpenFile] captured
    pipe_ends: Optional[dict] = None                # ino -> access modes open anywhere
    source: object = None                           # where pipe bytes are kept
    kcmp_works: bool = True
    owners_asked: set = field(default_factory=set)  # ids of files asked (checkpoint.fown)

    def same(self, pid, fd, key, pos, flags):
        """The OpenFile already met that (pid, fd) refers to, or None. Only fds of the same
        inode, position and flags can share an open file description: kcmp decides."""
        for other_pid, other_fd, file in self.by_inode.get(key, ()):
            if (file.pos, file.flags) == (pos, flags) and self.kcmp(pid, other_pid, fd,
                                                                    other_fd):
                return file
        return None

    def settle_pipes(self, captured=()):
        """Set each captured pipe's pipe_flags, once every process is captured. A pipe
        with both ends among the captured files needs no look further; only for the
        others are all processes' fd tables scanned (once). `captured`: pids whose fd
        tables the scan skips, their ends being those captured: the checkpointed processes
        (and their snapshot children, which share their fd tables) once they run again,
        so that the scan can be made after the snapshot, out of the freeze."""
        for ino, opened in self.pipe_files.items():
            modes = {file.flags & os.O_ACCMODE for file in opened}
            both = modes - {os.O_WRONLY} and modes - {os.O_RDONLY}
            flags = 0 if both else self.pipe_flags(ino, modes, captured)
            for file in opened:
                file.pipe_flags = flags

    def pipe_flags(self, ino, modes=frozenset(), captured=()):
        """CRFS_PIPE_NO_READER/NO_WRITER: the ends of pipe `ino` that no process (but this
        one, which opens pipes to copy their bytes) has open, `modes` being those of the
        captured processes (`captured`, not scanned); 0 when some /proc/PID/fd could not be
        read (a process we cannot see may hold it)."""
        if self.pipe_ends is None:
            self.pipe_ends = _pipe_ends(captured)
        if None not in self.pipe_ends:
            return 0
        modes = self.pipe_ends.get(ino, set()) | set(modes)
        flags = 0 if modes - {os.O_WRONLY} else CRFS_PIPE_NO_READER
        return flags | (0 if modes - {os.O_RDONLY} else CRFS_PIPE_NO_WRITER)

    def kcmp(self, pid1, pid2, fd1, fd2):
        if not self.kcmp_works:
            return False
        ret = _libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2)
        if ret < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                self.kcmp_works = False     # without kcmp no fds are merged
                return False
            raise OSError(err, f"kcmp of fd {fd1} of {pid1} and fd {fd2} of {pid2}")
        return ret == 0


def capture(pid, registry):
    """The FdTable of process `pid` (stopped)."""
    names = os.listdir(f"/proc/{pid}/fd")
    if len(names) > MAX_FDS:
        raise Unsupported(f"pid {pid}: more than {MAX_FDS} open files")
    table = FdTable()
    for fd in sorted(int(name) for name in names):
        table.fds.append(capture_fd(pid, fd, registry))
    for d in table.fds:
        if d.file.kind == "epoll" and d.file.watches is None:
            resolve_watches(pid, d, table)
    return table


_TFD = re.compile(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+pos:\s*-?\d+"
                  r"\s+ino:\s*([0-9a-f]+)")


def resolve_watches(pid, fd, table):
    """The watch list of epoll `fd` from its fdinfo "tfd:" lines. Each target is the fd
    of this table it was added as (same inode) or, when that fd was closed or reused since,
    the fd of this table holding the same open file, which kcmp(KCMP_EPOLL_TFD) tells; the
    watch keeps the fd number it was added as. A target in no fd of the table cannot be
    named: the epoll is then kept as an opaque file."""
    with open(f"/proc/{pid}/fdinfo/{fd.fd}") as f:
        text = f.read(procfs.SMALL_FILE * 16)
    watches, seen = [], {}
    for m in _TFD.finditer(text):
        tfd, events, data, ino = int(m[1]), int(m[2], 16), int(m[3], 16), int(m[4], 16)
        toff = seen[tfd] = seen.get(tfd, -1) + 1    # the how-manieth watch of fd tfd
        target = _watched(pid, fd.fd, tfd, toff, ino, table)
        if target is None:
            fd.file.kind, fd.file.path = "anon", "anon_inode:[eventpoll]"
            return
        watches.append(EpollWatch(fd=tfd, file=target.file, events=events, data=data))
    fd.file.watches = sorted(watches, key=lambda w: w.fd)   # fdinfo: the kernel's tree order


class _EpollSlot(ctypes.Structure):
    _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32), ("toff", ctypes.c_uint32)]


def _watched(pid, efd, tfd, toff, ino, table):
    """The Fd of `table` whose file is watch (tfd, toff) of epoll `efd`, or None."""
    slot = _EpollSlot(efd, tfd, toff)
    target = table.get(tfd)
    candidates = [target] if target is not None else []
    candidates += [d for d in table.fds if d is not target]
    for cand in candidates:
        if _inode(pid, cand.fd) != ino:
            continue
        ret = _libc.syscall(SYS_KCMP, pid, pid, KCMP_EPOLL_TFD, cand.fd, ctypes.byref(slot))
        if ret == 0:
            return cand
        if ret < 0 and cand is target:      # no kcmp: the fd it was added as, same inode
            return cand
    return None


def _inode(pid, fd):
    try:
        return os.stat(f"/proc/{pid}/fd/{fd}").st_ino
    except OSError:
        return None


def fdinfo(pid, fd):
    """/proc/PID/fdinfo/FD as {key: value text}."""
    return procfs.status_fields(f"/proc/{pid}/fdinfo/{fd}")


def capture_fd(pid, fd, registry):
    path = f"/proc/{pid}/fd/{fd}"
    link = os.readlink(path)
    info = fdinfo(pid, fd)
    flags = int(info["flags"], 8)
    cloexec = bool(flags & O_CLOEXEC)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (st.st_dev, st.st_ino) if st else None
    pos = int(info.get("pos", 0))
    file = registry.same(pid, fd, key, pos, flags & ~O_CLOEXEC) if key else None
    if file is None:
        file = open_file(pid, fd, link, st, info, flags & ~O_CLOEXEC, registry)
        if key:
            registry.by_inode.setdefault(key, []).append((pid, fd, file))
    return Fd(fd=fd, file=file, cloexec=cloexec)


def kind_of(link, st):
    if link.startswith("anon_inode:"):
        kind = link[len("anon_inode:"):].strip("[]")
        if kind == "eventpoll":
            return "epoll"
        return kind if kind in ANON_KINDS else "anon"
    if st is None:
        return "other"
    mode = st.st_mode
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "pipe" if link.startswith("pipe:[") else "fifo"
    if not link.startswith("/"):
        return "other"
    if st.st_nlink == 0 and (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        return "deleted"        # /proc shows "<path> (deleted)"
    for kind, test in (("reg", stat.S_ISREG), ("dir", stat.S_ISDIR), ("chr", stat.S_ISCHR),
                       ("blk", stat.S_ISBLK)):
        if test(mode):
            return kind
    return "other"


# The link of a namespace file (/proc/PID/ns/net opened): "net:[4026531840]".
NS_LINK = re.compile(r"[a-z_]{2,32}:\[[0-9]{1,20}\]")
O_PATH = 0o10000000


def open_file(pid, fd, link, st, info, flags, registry):
    kind = kind_of(link, st)
    if st is not None and kind != "deleted" and (
            (flags & O_PATH and link.startswith("/")) or
            (stat.S_ISREG(st.st_mode) and NS_LINK.fullmatch(link))):
        kind = "file"           # reopened by name: an O_PATH fd of any kind, a namespace
    mode = ACC_FMODE[flags & O_ACCMODE] | (FMODE_SEEK if kind in SEEKABLE else 0)
    file = OpenFile(kind=kind, path=link, flags=flags, mode=mode, pos=int(info.get("pos", 0)))
    if kind in ("pipe", "fifo"):
        file.pipe = st.st_ino
        if kind == "pipe":
            file.path = None
        if (kind, st.st_ino) not in registry.pipes:
            data, registry.pipes[kind, st.st_ino] = pipe_bytes(pid, fd)
            file.data = Blob(registry.source, registry.source.append(data), len(data))
        file.pipe_size = registry.pipes[kind, st.st_ino]
        if kind == "pipe":      # its pipe_flags: settle_pipes(), once all are captured
            registry.pipe_files.setdefault(st.st_ino, []).append(file)
    elif kind == "socket":
        file.sock = capture_unix(pid, fd, st.st_ino, registry)
    elif kind == "epoll":
        file.path = None        # its watches: resolve_watches(), once the table is read
    elif kind in ANON_KINDS:
        file.path = None
        if kind == "eventfd":
            file.count = int(info.get("eventfd-count", "0"), 16)
        elif kind == "timerfd":
            file.timer = FdTimer(clockid=int(info["clockid"]), ticks=int(info["ticks"]),
                                 flags=int(info["settime flags"], 8),
                                 value_ns=_timespec_ns(info["it_value"]),
                                 interval_ns=_timespec_ns(info["it_interval"]))
        else:
            file.sigmask = int(info["sigmask"], 16)
    elif kind == "deleted":
        data = deleted_data(pid, fd, st)
        if data is not None:
            file.data = Blob(registry.source, registry.source.append(data), len(data))
            file.native = CkptFileFields(st_mode=st.st_mode, st_uid=st.st_uid,
                                         st_gid=st.st_gid, atime_ns=st.st_atime_ns,
                                         mtime_ns=st.st_mtime_ns)
            if stat.S_ISREG(st.st_mode):     # which deleted files are one inode (a memfd
                file.file_id = FileId(dev=st.st_dev, ino=st.st_ino, size=st.st_size,
                                      mtime_ns=st.st_mtime_ns)   # opened twice)
    return file


def deleted_data(pid, fd, st):
    """A deleted regular file's content or a deleted symlink's target (a directory: no
    bytes), or None."""
    if stat.S_ISDIR(st.st_mode):
        return b""
    if stat.S_ISLNK(st.st_mode):
        return symlink_target(pid, fd)
    if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_DELETED_CONTENT:
        return deleted_content(pid, fd, st.st_size)
    return None


def symlink_target(pid, fd):
    """The target of the symlink an O_PATH fd holds: readlinkat(2) of a copy, "" path."""
    try:
        copy = os.open(f"/proc/{pid}/fd/{fd}", os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.fsencode(os.readlink("", dir_fd=copy)) or None
    except OSError:
        return None
    finally:
        os.close(copy)


def _timespec_ns(text):
    """fdinfo's "(seconds, nanoseconds)" in ns."""
    seconds, nanoseconds = text.strip("()").split(",")
    return int(seconds) * 1_000_000_000 + int(nanoseconds)


def deleted_content(pid, fd, size):
    """The bytes of a regular file deleted while open: read through /proc/PID/fd/N, else
    through a copy of the fd itself (pidfd_getfd) when it was opened for reading; None
    when neither may read it (then only its name is saved)."""
    try:
        copy = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        copy = _fd_copy(pid, fd)
        if copy is None:
            return None
    try:
        data = bytearray()
        while len(data) < size:
            chunk = os.pread(copy, min(size - len(data), 1 << 20), len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)
    except OSError:
        return None
    finally:
        os.close(copy)


def _fd_copy(pid, fd):
    """A duplicate of `pid`'s `fd` in this process (pidfd_getfd(2), Linux 5.6), or None."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        copy = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        return copy if copy >= 0 else None
    finally:
        os.close(pidfd)


def _pipe_ends(skipped=()):
    """{pipe inode: the access modes (O_ACCMODE) of its open files}, over the fds of every
    process but this one and those `skipped`; key None maps to {} iff every fd table could
    be read."""
    ends, complete = {}, True
    skipped = {os.getpid(), *skipped}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skipped:
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except FileNotFoundError:
            continue                    # exited
        except OSError:
            complete = False
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{name}/fd/{fd}")
                if not link.startswith("pipe:["):
                    continue
                with open(f"/proc/{name}/fdinfo/{fd}") as info:
                    flags = next(int(line.split()[1], 8) for line in info
                                 if line.startswith("flags:"))
            except (OSError, StopIteration):
                continue                # closed meanwhile
            ends.setdefault(int(link[6:-1]), set()).add(flags & os.O_ACCMODE)
    if complete:
        ends[None] = {}
    return ends


def pipe_bytes(pid, fd):
    """The bytes buffered in the pipe or FIFO of `pid`'s `fd`, left in place (a read end
    of it opened through /proc, tee(2)d into a pipe of ours as large as it), and the pipe's
    capacity."""
    try:
        src = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PipeCopyError(f"pid {pid} fd {fd}: cannot open the pipe to copy its "
                            f"buffer: {exc.strerror}") from None
    try:
        size = fcntl.fcntl(src, F_GETPIPE_SZ)
        pending = _fionread(src)
        if pending == 0:
            return b"", size
        rd, wr = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            if fcntl.fcntl(wr, F_GETPIPE_SZ) < size:
                try:
                    fcntl.fcntl(wr, F_SETPIPE_SZ, size)
                except OSError as exc:
                    raise PipeCopyError(f"pid {pid} fd {fd}: a pipe of {size} bytes to copy "
                                        f"its buffer into: {exc.strerror}") from None
            copied = _libc.tee(src, wr, pending, SPLICE_F_NONBLOCK)
            if copied != pending:
                err = ctypes.get_errno() if copied < 0 else 0
                raise PipeCopyError(f"pid {pid} fd {fd}: tee copied {copied} of {pending} "
                                    f"buffered bytes{f' ({os.strerror(err)})' if err else ''}")
            return _read_all(rd, pending), size
        finally:
            os.close(rd)
            os.close(wr)
    finally:
        os.close(src)


def _fionread(fd):
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def _read_all(fd, length):
    chunks = []
    while length:
        chunk = os.read(fd, length)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)
