"""An image's index (the typed model without page bytes) as bytes, and back, defensively.

The bytes come back from a cache an attacker might have reached, so decoding trusts
nothing: no pickle, no code named by the data. The layout is

    magic "CRFSIDX1" | u32 length | JSON head (identity, code digest)
                     | u64 length | JSON model | u64 length | page runs (u64 LE)
                     | SHA-256 of everything before it

The JSON model is the object graph with every non-JSON value tagged, each tag decoded by
a fixed rule: {"b": hex} bytes, {"t": [...]} tuple, {"d": [[k, v]...]} dict, {"p": [i, n,
count]} a PageMap of n runs from run i, {"s": 0} the image's Source, {"c": class, "f":
{field: value}} an object of one of the model's classes (a fixed list), with "id" when it
is shared (an Mm by threads, a ShmSegment by VMAs) and {"r": id} for each later use.
Every class is rebuilt through its constructor with exactly its declared fields, and
check() then validates the result against the file (types, page runs inside the file).
Any error raises IndexCorrupt: the caller indexes the image again.
"""

import dataclasses
import hashlib
import json
import struct
import sys
from array import array

from crfs.formats.x86 import PAGE_SIZE
from crfs.model.image import InetSock, IpcNamespace, Namespace, SysvShm, TaskMisc, UnixSock
from crfs.model.image import (FILE_KINDS, NSIG, VMA_KINDS, AltStack, Blob, Creds, EpollWatch,
                              Exit, Fd, FdTable, FdTimer, FileId, FsStruct, Futex, Image,
                              Itimers, Mm, NativeFields, OpenFile, Pending, PosixTimer, ShmSegment,
                              Rseq, SigAction, SigHand, SigInfo, Signals, Task, ThreadGroup,
                              Vma)
from crfs.model.pages import PageMap
from crfs.model.registers import GDB_REGISTERS, Registers

MAGIC = b"CRFSIDX1"
VERSION = 1
# Objects threads share, and open files shared by fds and epolls.
_SHARED = (Mm, ShmSegment, SigHand, ThreadGroup, FsStruct, FdTable, OpenFile, IpcNamespace)


class IndexCorrupt(Exception):
    """The bytes are not an index this code wrote for this file: rebuild it."""


class Unencodable(Exception):
    """The model holds a value the codec does not know: the index is not saved."""


def _native_classes():
    # The formats' NativeFields records (made by native_record), by class name.
    import crfs.model.ckpt_load  # noqa: F401  (each defines its records on import)
    import crfs.model.cpt  # noqa: F401
    import crfs.model.cr  # noqa: F401
    return {cls.__name__: cls for cls in NativeFields.__subclasses__()}


def _classes():
    classes = {cls.__name__: cls for cls in (Image, Task, Mm, Vma, ShmSegment, Creds, Exit,
                                             Futex, Signals, SigHand, SigAction, ThreadGroup,
                                             Pending, SigInfo, Itimers, AltStack, FsStruct,
                                             FdTable, Fd, OpenFile, Blob, FdTimer, EpollWatch,
                                             FileId, Rseq, UnixSock, PosixTimer,
                                             TaskMisc, InetSock, SysvShm, IpcNamespace,
                                             Namespace)}
    natives = _native_classes()
    if set(natives) & set(classes):
        raise RuntimeError("a native record is named like a model class")
    classes.update(natives)
    return classes


_CLASSES = None


def classes():
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _classes()
    return _CLASSES


# --- encoding -----------------------------------------------------------------------

class _Encoder:
    def __init__(self, source):
        self.source = source
        self.shared = {}        # id(obj) -> number
        self.runs = [array("Q") for _ in range(4)]
        self.nruns = 0

    def value(self, obj):
        kind = type(obj)
        if obj is None or kind in (bool, int, str):
            return obj
        if kind is bytes:
            return {"b": obj.hex()}
        if kind is list:
            return [self.value(x) for x in obj]
        if kind is tuple:
            return {"t": [self.value(x) for x in obj]}
        if kind is dict:
            return {"d": [[self.value(k), self.value(v)] for k, v in obj.items()]}
        if kind is PageMap:
            return {"p": self.pagemap(obj)}
        if obj is self.source:
            return {"s": 0}
        if kind is Registers:
            return {"g": [obj.arch, self.value(obj.as_dict())]}
        if dataclasses.is_dataclass(obj) and classes().get(kind.__name__) is kind:
            return self.record(obj)
        raise Unencodable(f"{kind.__module__}.{kind.__qualname__}")

    def record(self, obj):
        if isinstance(obj, _SHARED):
            number = self.shared.get(id(obj))
            if number is not None:
                return {"r": number}
            number = self.shared[id(obj)] = len(self.shared)
        else:
            number = None
        out = {"c": type(obj).__name__,
               "f": {f.name: self.value(getattr(obj, f.name))
                     for f in dataclasses.fields(obj)}}
        if number is not None:
            out["id"] = number
        return out

    def pagemap(self, pages):
        arrays = (pages._starts, pages._firsts, pages._offsets, pages._strides)
        first = self.nruns
        for column, values in zip(self.runs, arrays):
            column.extend(values)
        self.nruns += len(pages._starts)
        return [first, len(pages._starts), len(pages)]


def encode(image, head):
    """The bytes of `image`'s index, with `head` (a JSON-able dict) in front."""
    enc = _Encoder(image.source)
    model = json.dumps(enc.value(image), separators=(",", ":")).encode()
    runs = b"".join(_le(column) for column in enc.runs)
    head = json.dumps(head, separators=(",", ":")).encode()
    body = b"".join((MAGIC, struct.pack("<I", len(head)), head,
                     struct.pack("<Q", len(model)), model, struct.pack("<Q", len(runs)), runs))
    return body + hashlib.sha256(body).digest()


def _le(column):
    if sys.byteorder != "little":
        column = array("Q", column)
        column.byteswap()
    return column.tobytes()


# --- decoding -----------------------------------------------------------------------

def read_head(data):
    """The JSON head of index bytes `data`, after checking magic, lengths and checksum."""
    try:
        if len(data) < len(MAGIC) + 4 + 8 + 8 + 32 or data[:len(MAGIC)] != MAGIC:
            raise IndexCorrupt("not an index")
        body, digest = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != digest:
            raise IndexCorrupt("checksum mismatch")
        pos = len(MAGIC)
        (length,) = struct.unpack_from("<I", body, pos)
        head = json.loads(_slice(body, pos + 4, length))
        if not isinstance(head, dict):
            raise IndexCorrupt("head is not an object")
        return head
    except IndexCorrupt:
        raise
    except (ValueError, struct.error, RecursionError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"unreadable: {exc}") from None


def _slice(body, start, length):
    if start + length > len(body):
        raise IndexCorrupt("a length exceeds the file")
    return body[start:start + length]


def decode(data, source):
    """(head, Image) from index bytes `data` (as encode() wrote them); pages point into
    `source`. IndexCorrupt on anything amiss."""
    head = read_head(data)
    try:
        body = data[:-32]
        pos = len(MAGIC)
        (length,) = struct.unpack_from("<I", body, pos)
        pos += 4 + length
        (length,) = struct.unpack_from("<Q", body, pos)
        model = json.loads(_slice(body, pos + 8, length))
        pos += 8 + length
        (length,) = struct.unpack_from("<Q", body, pos)
        runs_bytes = _slice(body, pos + 8, length)
        if pos + 8 + length != len(body) or length % 32:
            raise IndexCorrupt("page runs do not fill the file")
        runs = array("Q")
        runs.frombytes(runs_bytes)
        if sys.byteorder != "little":
            runs.byteswap()
        image = _Decoder(source, runs).value(model)
        if type(image) is not Image:
            raise IndexCorrupt("not an image")
        check(image, source.size)
        return head, image
    except IndexCorrupt:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error,
            RecursionError, UnicodeDecodeError, OverflowError) as exc:
        raise IndexCorrupt(f"malformed: {type(exc).__name__}: {exc}") from None


class _Decoder:
    def __init__(self, source, runs):
        self.source = source
        self.nruns = len(runs) // 4
        self.columns = [runs[i * self.nruns:(i + 1) * self.nruns] for i in range(4)]
        self.shared = {}

    def value(self, obj):
        kind = type(obj)
        if obj is None or kind in (bool, int, str):
            return obj
        if kind is list:
            return [self.value(x) for x in obj]
        if kind is not dict or len(obj) not in (1, 2, 3):
            raise IndexCorrupt(f"unexpected {kind.__name__}")
        if "c" in obj:
            return self.record(obj)
        ((tag, arg),) = obj.items()
        if tag == "b" and type(arg) is str:
            return bytes.fromhex(arg)
        if tag == "t" and type(arg) is list:
            return tuple(self.value(x) for x in arg)
        if tag == "d" and type(arg) is list:
            out = {}
            for k, v in arg:
                out[self.value(k)] = self.value(v)
            return out
        if tag == "p":
            return self.pagemap(*arg)
        if tag == "s" and arg == 0:
            return self.source
        if tag == "g":
            arch, values = arg
            if arch not in GDB_REGISTERS:
                raise IndexCorrupt("unknown arch")
            values = self.value(values)
            if type(values) is not dict or not all(type(v) is int for v in values.values()):
                raise IndexCorrupt("registers")
            return Registers(arch, values)
        if tag == "r" and arg in self.shared:
            return self.shared[arg]
        raise IndexCorrupt(f"unknown tag {tag!r}")

    def record(self, obj):
        cls = classes().get(obj["c"])
        if cls is None or set(obj) - {"c", "f", "id"}:
            raise IndexCorrupt("unknown record")
        values = obj["f"]
        names = [f.name for f in dataclasses.fields(cls)]
        if type(values) is not dict or sorted(values) != sorted(names):
            raise IndexCorrupt(f"{cls.__name__}: fields")
        number = obj.get("id")
        if (number is None) != (not issubclass(cls, _SHARED)) or number in self.shared:
            raise IndexCorrupt(f"{cls.__name__}: sharing")
        if number is None:
            return cls(**{name: self.value(values[name]) for name in names})
        # A shared object is registered before its fields are decoded: refs inside its
        # own fields could otherwise not name it (none do today; cycles stay impossible
        # because a ref only names objects whose decoding has started).
        made = cls.__new__(cls)
        self.shared[number] = made
        made.__init__(**{name: self.value(values[name]) for name in names})
        return made

    def pagemap(self, first, count, pages):
        if not all(type(x) is int for x in (first, count, pages)):
            raise IndexCorrupt("page map")
        if first < 0 or count < 0 or first + count > self.nruns or pages < 0:
            raise IndexCorrupt("page map outside the runs")
        return PageMap.from_runs(*(c[first:first + count] for c in self.columns), pages)


# --- validation -----------------------------------------------------------------------

def _require(ok, what):
    if not ok:
        raise IndexCorrupt(what)


def _ints(*values):
    return all(type(v) is int for v in values)


def check(image, file_size):
    """Raise IndexCorrupt unless `image` has the shape a loader gives and every page
    it names lies inside the file."""
    _require(all(type(v) is str for v in (image.format, image.dialect, image.arch)),
             "image strings")
    _require(image.arch in GDB_REGISTERS, "arch")
    _require(type(image.header) is dict and type(image.tasks) is list, "image")
    _require(image.time is None or type(image.time) is int, "time")
    _require(type(image.record_count) is int, "record count")
    for task in image.tasks:
        _require(type(task) is Task and _ints(task.pid, task.tgid, task.ppid)
                 and type(task.comm) is str, "task")
        _require(type(task.exit) is Exit and type(task.futex) is Futex, "task parts")
        _require(task.creds is None or type(task.creds) is Creds, "creds")
        _require(task.regs is None or task.regs.arch == image.arch, "registers")
        _require(task.fpu is None or type(task.fpu) is bytes, "fpu")
        _require(task.rseq is None or (type(task.rseq) is Rseq and _ints(
            *vars(task.rseq).values())), "rseq")
        _require(type(task.seccomp) is int, "seccomp")
        _require(task.misc is None or (type(task.misc) is TaskMisc and _ints(
            task.misc.personality, task.misc.policy, task.misc.rt_priority, task.misc.nice)
            and type(task.misc.thp_disable) is bool
            and type(task.misc.child_subreaper) is bool), "misc")
        if task.creds is not None:
            _check_creds(task.creds)
        if task.signals is not None:
            _check_signals(task.signals)
        if task.fs is not None:
            _require(type(task.fs) is FsStruct and _optional(task.fs.umask, int)
                     and _optional(task.fs.cwd, str) and _optional(task.fs.root, str), "fs")
        if task.mm is not None:
            _check_mm(task.mm, file_size)
        if task.files is not None:
            _check_files(task.files, file_size, image.source)
        _check_ns(task, file_size, image.source)
    _require(image.namespaces is None or (type(image.namespaces) is list and all(
        type(ns) is Namespace and type(ns.own) is bool and type(ns.files) is tuple
        and all(type(v) is str for v in (ns.type, ns.link, ns.note, *ns.files))
        for ns in image.namespaces)), "namespaces")


def _check_ns(task, file_size, source):
    """A task's namespace links, cgroup text and SysV segments (bytes inside the file)."""
    _require(task.namespaces is None or (type(task.namespaces) is dict and all(
        type(k) is str and type(v) is str for k, v in task.namespaces.items())), "ns links")
    _require(_optional(task.cgroup, str), "cgroup")
    ipc = task.ipc
    if ipc is None:
        return
    _require(type(ipc) is IpcNamespace and type(ipc.name) is str
             and type(ipc.shms) is list, "ipc namespace")
    for shm in ipc.shms:
        _require(type(shm) is SysvShm and _ints(shm.key, shm.shmid, shm.mode, shm.uid,
                                                shm.gid, shm.cuid, shm.cgid, shm.size)
                 and shm.source is source and _optional(shm.where, str), "SysV shm")
        if shm.segment is not None:
            _require(type(shm.segment) is ShmSegment, "SysV shm segment")
            _check_pages(shm.segment.pages, file_size, 0, None)
        if shm.data is not None:
            _require(type(shm.data) is Blob and shm.data.source is source
                     and _ints(shm.data.offset, shm.data.length) and shm.data.offset >= 0
                     and 0 <= shm.data.length == shm.size
                     and shm.data.offset + shm.data.length <= file_size, "SysV shm bytes")


def _optional(value, kind):
    return value is None or type(value) is kind


def _check_files(table, file_size, source):
    """What render and the writers read of a file table: types, and stored bytes (pipe
    buffers, deleted files' content) inside the image file."""
    _require(type(table) is FdTable and type(table.fds) is list, "file table")
    for fd in table.fds:
        _require(type(fd) is Fd and type(fd.fd) is int and type(fd.cloexec) is bool, "fd")
        _check_open_file(fd.file, file_size, source)
        for watch in fd.file.watches or ():
            _require(type(watch) is EpollWatch and _ints(watch.fd, watch.events, watch.data),
                     "epoll watch")
            _check_open_file(watch.file, file_size, source)


def _check_open_file(file, file_size, source):
    _require(type(file) is OpenFile and file.kind in FILE_KINDS
             and _ints(file.flags, file.mode, file.pos) and _optional(file.path, str)
             and all(_optional(v, int) for v in (file.pipe, file.count, file.sigmask)),
             "open file")
    _require(file.watches is None or type(file.watches) is list, "epoll watches")
    _require(file.timer is None or (type(file.timer) is FdTimer
                                    and _ints(*vars(file.timer).values())), "timerfd")
    _require(file.native is None or isinstance(file.native, NativeFields), "file fields")
    _require(_file_id_ok(file.file_id), "file file_id")
    sock = file.sock
    _require(sock is None or (type(sock) is UnixSock and type(sock.name) is bytes
                              and type(sock.msgs) is tuple and _ints(*sock.msgs)
                              and _ints(sock.ino, sock.peer, sock.family, sock.type,
                                        sock.state, sock.shutdown, sock.backlog, sock.mode,
                                        sock.uid, sock.gid)
                              and type(sock.icon) is bool),
             "UNIX socket")
    if sock is not None and sock.data is not None:
        _require(type(sock.data) is Blob and sock.data.source is source
                 and 0 <= sock.data.offset
                 and sock.data.offset + sock.data.length <= file_size, "socket bytes")
    inet = file.inet
    _require(inet is None or (type(inet) is InetSock and _ints(
        inet.ino, inet.family, inet.type, inet.proto, inet.state, inet.src_port,
        inet.dst_port, inet.backlog) and type(inet.src) is tuple and type(inet.dst) is tuple
        and _ints(*inet.src, *inet.dst) and _optional(inet.netns, str)
        and _optional(inet.where, str)), "inet socket")
    data = file.data
    if data is not None:
        _require(type(data) is Blob and data.source is source
                 and _ints(data.offset, data.length)
                 and 0 <= data.offset and 0 <= data.length
                 and data.offset + data.length <= file_size, "file bytes outside the file")


def _check_creds(creds):
    _require(_ints(*(getattr(creds, name) for name in Creds.names())), "creds ids")
    _require(creds.groups is None or (type(creds.groups) is list and _ints(*creds.groups)),
             "groups")
    _require(all(_optional(getattr(creds, name), int) for name in (
        "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb", "securebits",
        "no_new_privs")), "capabilities")


def _check_signals(signals):
    """Everything render reads of a thread's signal state has its type and size."""
    _require(type(signals) is Signals and type(signals.blocked) is int, "signals")
    _check_pending(signals.pending)
    handlers = signals.handlers
    if handlers is not None:
        _require(type(handlers) is SigHand and type(handlers.actions) is list
                 and len(handlers.actions) == NSIG, "sighand")
        for action in handlers.actions:
            _require(type(action) is SigAction
                     and _ints(action.handler, action.flags, action.restorer, action.mask),
                     "sigaction")
    group = signals.group
    if group is not None:
        _require(type(group) is ThreadGroup, "thread group")
        _check_pending(group.shared_pending)
        _require(group.rlimits is None or (type(group.rlimits) is list and all(
            type(limit) in (list, tuple) and len(limit) == 2 and _ints(*limit)
            for limit in group.rlimits)), "rlimits")
        _require(group.itimers is None or (type(group.itimers) is Itimers and _ints(
            *vars(group.itimers).values())), "itimers")
        _require(_optional(group.oom_score_adj, int), "oom_score_adj")
        _require(type(group.posix_timers) is list and all(
            type(t) is PosixTimer and type(t.pending) is bool and _ints(
                t.id, t.clockid, t.signo, t.notify, t.notify_tid, t.sigev_value, t.value_ns,
                t.interval_ns, t.overrun) for t in group.posix_timers), "posix_timers")
    _require(signals.altstack is None or (type(signals.altstack) is AltStack and _ints(
        *vars(signals.altstack).values())), "altstack")


def _check_pending(pending):
    _require(type(pending) is Pending and type(pending.mask) is int
             and type(pending.queue) is list, "pending")
    for info in pending.queue:
        _require(type(info) is SigInfo and _ints(info.signo, info.code, info.pid)
                 and _optional(info.raw, bytes), "siginfo")


def _file_id_ok(file_id):
    return file_id is None or (type(file_id) is FileId and _ints(
        file_id.dev, file_id.ino, file_id.size, file_id.mtime_ns))


def _check_mm(mm, file_size):
    _require(type(mm) is Mm and type(mm.fields) is dict and type(mm.vmas) is list, "mm")
    _require(_optional(mm.exe, str) and _file_id_ok(mm.exe_id), "mm exe")
    end = -1
    for vma in mm.vmas:
        _require(type(vma) is Vma and _ints(vma.start, vma.end, vma.pgoff, vma.vm_flags),
                 "vma")
        _require(end <= vma.start < vma.end, "vmas out of order")
        _require(vma.kind in VMA_KINDS, "vma kind")
        _require(vma.file is None or type(vma.file) is str, "vma file")
        _require(_file_id_ok(vma.file_id), "vma file_id")
        end = vma.end
        _check_pages(vma.pages, file_size, vma.start, vma.end)
        if vma.shm is not None:
            _require(type(vma.shm) is ShmSegment and type(vma.shm.size) is int, "shm")
            _check_pages(vma.shm.pages, file_size, 0, None)


def _check_pages(pages, file_size, low, high):
    _require(type(pages) is PageMap, "pages")
    for addr, count, offset, stride in pages.runs():
        _require(count > 0 and addr % PAGE_SIZE == 0 and addr >= low, "page run")
        _require(high is None or addr + count * PAGE_SIZE <= high, "page run outside its vma")
        _require(offset + (count - 1) * stride + PAGE_SIZE <= file_size,
                 "page run outside the file")
