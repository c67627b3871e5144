"""What a CRIU dump carries into the model beyond memory and registers, for `crfs convert
--format ckpt` to restart (issue #15; the guest's zdtm way "criu+convert" in
tests/test_kmod_guest.py restarts them): pipe data, memfd bytes, UNIX sockets, rseq, the
exe, owners of files, and on dumps edited here (entries re-encoded from crfs's own
declarations of CRIU's messages) pending signals, timers, zombies, ghost files and socket
queues; every one survives the conversion, and a truncated entry is an error naming the
file, the entry and the offset."""

import json
import shutil
import struct
from pathlib import Path

import pytest

from crfs import convert
from crfs.errors import FormatError, Unsupported
from crfs.formats import criu
from crfs.model import registry
from crfs.model.image import EXIT_ZOMBIE

DATA = Path(__file__).parent / "data" / "criu"
FILES_PID = int((DATA / "files.truth" / "out.txt").read_text().split()[1])
SI_USER, SI_TIMER = 0, -2
SIGUSR1, SIGUSR2, SIGALRM = 10, 12, 14

# ------------------------------------------------------------------ writing CRIU entries


def encode(msg, fields):
    """The protobuf bytes of `fields` (a dict as criu.decode gives) as message `msg`."""
    out = bytearray()
    for number, (name, ftype, label) in sorted(msg.fields.items()):
        if name not in fields:
            continue
        values = fields[name] if label == criu.REP else [fields[name]]
        for value in values:
            if isinstance(ftype, criu.Message):
                out += _field(number, 2, encode(ftype, value))
            elif ftype in (criu.STR, criu.BYTES):
                raw = value.encode() if isinstance(value, str) else value
                out += _field(number, 2, raw)
            else:
                if ftype in (criu.S32, criu.S64):
                    value = (value << 1) ^ (value >> 63)
                out += criu.varint(number << 3) + criu.varint(int(value) & ((1 << 64) - 1))
    return bytes(out)


def _field(number, wire, payload):
    return criu.varint(number << 3 | wire) + criu.varint(len(payload)) + payload


def write_img(path, magic, entries, raw=b""):
    """A CRIU image file: IMG_COMMON_MAGIC, the file's magic, each entry (bytes, or
    (bytes, data that follows it)) framed by its u32 length, then `raw`."""
    out = bytearray(struct.pack("<II", criu.IMG_COMMON_MAGIC, criu.MAGICS[magic]))
    for entry in entries:
        body, after = entry if isinstance(entry, tuple) else (entry, b"")
        out += struct.pack("<I", len(body)) + body + after
    path.write_bytes(bytes(out + raw))


def entries(path, name):
    d = criu.CriuDir.open(str(path))
    try:
        return [e.fields for e in criu.read_entries(d, name)]
    finally:
        d.close()


def siginfo(signo, code, pid=0, uid=0, value=0, timer_id=0):
    """A 128-byte x86_64 siginfo_t, as PTRACE_PEEKSIGINFO gives it (criu keeps those)."""
    head = struct.pack("<iii4x", signo, 0, code)
    if code == SI_TIMER:
        body = struct.pack("<iiQ", timer_id, 0, value)      # si_tid, si_overrun, sigval
    else:
        body = struct.pack("<iIQ", pid, uid, value)
    return (head + body).ljust(128, b"\0")


@pytest.fixture
def dump(tmp_path):
    """A copy of the files dump (one process) to edit."""
    path = tmp_path / "files"
    shutil.copytree(DATA / "files", path)
    return path


def edit_core(path, pid, change):
    """core-PID.img re-encoded after change(core_entry dict)."""
    name = f"core-{pid}.img"
    core = entries(path, name)[0]
    change(core)
    write_img(path / name, "CORE", [encode(criu.CORE, core)])


def load(path):
    return registry.open_image(str(path))


def fd_file(image, fd):
    return image.tasks[0].files.get(fd).file


# ------------------------------------------------------------------ the committed dumps


def test_pipe_keeps_its_bytes_and_ends():
    """files_prog's pipe (fds 4, 5: 4 bytes "pipe" left in it): its bytes and capacity from
    pipes-data.img; both ends in the dump, so no end is marked missing."""
    image = load(DATA / "files")
    read_end, write_end = fd_file(image, 4), fd_file(image, 5)
    assert read_end.pipe == write_end.pipe == 417
    assert read_end.data.read() == b"pipe" and read_end.pipe_size == 65536
    assert read_end.pipe_flags == write_end.pipe_flags == 0


def test_memfd_fd_is_a_deleted_file_with_its_bytes():
    """The memfd "crfs-memfd" (8 bytes written) is fd 13: a file deleted while open with
    those bytes, as crfs's checkpointer keeps it, and its inode's identity."""
    memfd = fd_file(load(DATA / "files"), 13)
    assert memfd.kind == "deleted" and memfd.path == "/memfd:crfs-memfd (deleted)"
    assert memfd.data.read() == b"memfd-8b"
    inode = entries(DATA / "files", "memfd.img")[0]
    assert memfd.file_id.ino == inode["inode_id"] and memfd.file_id.size == 8


def test_socketpair_ends_name_each_other():
    image = load(DATA / "files")
    a, b = fd_file(image, 6).sock, fd_file(image, 7).sock
    assert (a.type, a.state, b.type, b.state) == (1, 1, 1, 1)     # SOCK_STREAM, connected
    assert (a.peer, b.peer) == (b.ino, a.ino)
    assert fd_file(image, 6).link() == "socket:[418]"
    assert a.msgs == b.msgs == () and not a.icon


def test_rseq_and_exe_as_crit_shows_them():
    core = json.loads((DATA / "files.truth" / "crit" / f"core-{FILES_PID}.json").read_text())
    rseq = core["entries"][0]["thread_core"]["rseq_entry"]
    task = load(DATA / "files").tasks[0]
    assert (task.rseq.addr, task.rseq.length, task.rseq.sig) == (
        rseq["rseq_abi_pointer"], rseq["rseq_abi_size"], rseq["signature"])
    assert task.mm.exe == "/tmp/crfs-criu/files_prog"
    assert task.seccomp == 0 and task.signals.pending.queue == []


def test_converted_dump_keeps_what_the_dump_carried(tmp_path):
    """crfs convert --format ckpt, read back: pipe bytes, memfd bytes, socket pair, rseq
    and exe are those of the dump."""
    out = convert.convert(str(DATA / "files"), str(tmp_path / "files.ckpt"), "ckpt")
    image = load(out)
    task = image.tasks[0]
    assert fd_file(image, 4).data.read() == b"pipe"
    assert fd_file(image, 13).data.read() == b"memfd-8b"
    a, b = fd_file(image, 6).sock, fd_file(image, 7).sock
    assert (a.peer, b.peer) == (b.ino, a.ino)
    assert task.rseq is not None and task.rseq.sig == load(DATA / "files").tasks[0].rseq.sig
    assert task.mm.exe == "/tmp/crfs-criu/files_prog"


# ------------------------------------------------------------------ edited dumps


def test_pending_signals_and_timers(dump, tmp_path):
    """A shared SIGUSR1 (SI_USER from pid 1), a thread's SIGUSR2, ITIMER_REAL at 1.5 s
    every 0.25 s, a POSIX timer (CLOCK_MONOTONIC, SIGALRM, 2 s then 1 s) whose SI_TIMER
    signal is queued: all in the model, and the same after the conversion."""
    def change(core):
        tc = core["tc"]
        tc["signals_s"] = {"signals": [{"siginfo": siginfo(SIGUSR1, SI_USER, pid=1)}]}
        zero = {"isec": 0, "iusec": 0, "vsec": 0, "vusec": 0}
        tc["timers"] = {"real": {"isec": 0, "iusec": 250000, "vsec": 1, "vusec": 500000},
                        "virt": zero, "prof": zero,
                        "posix": [{"it_id": 0, "clock_id": 1, "si_signo": SIGALRM,
                                   "it_sigev_notify": 0, "sival_ptr": 7, "overrun": 0,
                                   "isec": 1, "insec": 0, "vsec": 2, "vnsec": 0}]}
        core["thread_core"]["signals_p"] = {"signals": [
            {"siginfo": siginfo(SIGUSR2, SI_USER, pid=FILES_PID)},
            {"siginfo": siginfo(SIGALRM, SI_TIMER, value=7, timer_id=0)}]}
    edit_core(dump, FILES_PID, change)
    for image in (load(dump), load(convert.convert(str(dump), str(tmp_path / "x.ckpt"),
                                                   "ckpt"))):
        task = image.tasks[0]
        group = task.signals.group
        assert group.shared_pending.mask == 1 << (SIGUSR1 - 1)
        assert [(i.signo, i.pid) for i in group.shared_pending.queue] == [(SIGUSR1, 1)]
        assert task.signals.pending.mask == 1 << (SIGUSR2 - 1) | 1 << (SIGALRM - 1)
        assert (group.itimers.real_value, group.itimers.real_incr) == (1_500_000_000,
                                                                       250_000_000)
        (timer,) = group.posix_timers
        assert (timer.id, timer.clockid, timer.signo, timer.interval_ns) == (
            0, 1, SIGALRM, 10**9)
        assert timer.pending and timer.value_ns == 1     # its signal is queued: fires at once


def test_short_siginfo_is_an_error_naming_the_core(dump):
    edit_core(dump, FILES_PID, lambda core: core["tc"].__setitem__(
        "signals_s", {"signals": [{"siginfo": b"\x0a" + bytes(20)}]}))
    with pytest.raises(FormatError, match=rf"core-{FILES_PID}\.img.*signals_s.*21 bytes"):
        load(dump)


def test_zombie_is_a_task_without_memory(dump):
    """A process criu dumped as a zombie (task_state 2, its exit status, no thread of its
    own: criu's pstree thread slot is garbage) is a zombie task of the model."""
    tree = entries(dump, "pstree.img")
    tree.append({"pid": 4242, "ppid": FILES_PID, "pgid": FILES_PID, "sid": tree[0]["sid"],
                 "threads": [1277649824]})
    write_img(dump / "pstree.img", "PSTREE", [encode(criu.PSTREE, e) for e in tree])
    core = {"mtype": 1, "tc": {"task_state": 2, "exit_code": 3 << 8, "personality": 0,
                               "flags": 0, "blk_sigset": 0, "comm": "gone"}}
    write_img(dump / "core-4242.img", "CORE", [encode(criu.CORE, core)])
    zombie = load(dump).task(4242)
    assert zombie.exit.state == EXIT_ZOMBIE and zombie.exit.code == 3 << 8
    assert zombie.mm is None and zombie.ppid == FILES_PID and zombie.comm == "gone"


def test_thread_slot_zero_is_left_out(dump):
    tree = entries(dump, "pstree.img")
    tree[0]["threads"] = [FILES_PID, 0]
    write_img(dump / "pstree.img", "PSTREE", [encode(criu.PSTREE, e) for e in tree])
    assert [t.pid for t in load(dump).tasks] == [FILES_PID]


def ghost(dump, file_id, gfe, after):
    write_img(dump / "remap-fpath.img", "REMAP_FPATH", [encode(
        criu.REMAP_FPATH, {"orig_id": file_id, "remap_id": 1, "remap_type": 1})])
    write_img(dump / "ghost-file-1.img", "GHOST_FILE", [(encode(criu.GHOST_FILE, gfe), b"")],
              after)


GHOST = {"uid": 1, "gid": 2, "mode": 0o100640, "dev": 26, "ino": 558,
         "mtim": {"tv_sec": 5, "tv_usec": 6}}


def test_ghost_file_is_a_deleted_file_with_its_bytes(dump, tmp_path):
    """data.txt (fd 3, file id 6) made a ghost: the fd is a file deleted while open with
    the ghost's bytes, mode, owner and times, through the conversion too."""
    ghost(dump, 6, GHOST, b"ghost bytes")
    for image in (load(dump), load(convert.convert(str(dump), str(tmp_path / "g.ckpt"),
                                                   "ckpt"))):
        f = fd_file(image, 3)
        assert f.kind == "deleted" and f.path == "/tmp/crfs-criu/files/data.txt (deleted)"
        assert f.data.read() == b"ghost bytes" and f.pos == 3
        assert (f.native.st_mode, f.native.st_uid, f.native.st_gid, f.native.mtime_ns) == (
            0o100640, 1, 2, 5 * 10**9 + 6000)


def test_chunked_ghost_has_zeros_in_its_holes(dump):
    chunk = encode(criu.GHOST_CHUNK, {"len": 4, "off": 8})
    ghost(dump, 6, {**GHOST, "chunks": True, "size": 16},
          struct.pack("<I", len(chunk)) + chunk + b"DATA")
    assert fd_file(load(dump), 3).data.read() == bytes(8) + b"DATA" + bytes(4)


def test_ghost_chunk_past_the_end_is_an_error(dump):
    chunk = encode(criu.GHOST_CHUNK, {"len": 100, "off": 0})
    ghost(dump, 6, {**GHOST, "chunks": True, "size": 1000},
          struct.pack("<I", len(chunk)) + chunk + b"short")
    with pytest.raises(FormatError, match=r"ghost-file-1\.img: entry 1 \(ghost_chunk_entry\)"
                       r".*100 bytes of data run past the end"):
        load(dump)


def test_deleted_cwd_reads_deleted(dump):
    fs = entries(dump, f"fs-{FILES_PID}.img")[0]
    ghost(dump, fs["cwd_id"], {**GHOST, "mode": 0o40700}, b"")
    cwd = load(dump).tasks[0].fs.cwd
    assert cwd.endswith(" (deleted)") and cwd.startswith("/")


def test_socket_queue_and_scm_rights(dump):
    """sk-queues.img: two messages for the pair's first end (file id 9) are its queue; a
    message carrying fds (SCM_RIGHTS) leaves the socket opaque."""
    msgs = [(encode(criu.SK_PACKET, {"id_for": 9, "length": 3}), b"abc"),
            (encode(criu.SK_PACKET, {"id_for": 9, "length": 2}), b"de")]
    write_img(dump / "sk-queues.img", "SK_QUEUES", msgs)
    sock = fd_file(load(dump), 6).sock
    assert sock.msgs == (3, 2) and sock.data.read() == b"abcde"
    rights = encode(criu.SK_PACKET, {"id_for": 10, "length": 1,
                                     "scm": [{"type": 1, "rights": [5]}]})
    write_img(dump / "sk-queues.img", "SK_QUEUES", msgs + [(rights, b"x")])
    assert fd_file(load(dump), 7).sock is None


def test_truncated_pipe_data_is_an_error_naming_the_entry(dump):
    path = dump / "pipes-data.img"
    entry = encode(criu.PIPE_DATA, entries(dump, "pipes-data.img")[0])
    path.write_bytes(path.read_bytes()[:-2])     # 2 of the pipe's 4 bytes
    with pytest.raises(FormatError) as err:
        load(dump)
    assert "pipes-data.img: entry 0 (pipe_data_entry)" in str(err.value)
    assert "4 bytes of data run past the end (2 left)" in str(err.value)
    assert err.value.offset == 8 + 4 + len(entry)    # magics, its length, the entry


def test_table_without_fdinfo_file_is_empty(dump):
    """criu writes no fdinfo file for a process without an open fd: its table is empty
    (not unknown, which a restart would fill with the restarter's fds)."""
    (dump / "fdinfo-2.img").unlink()
    table = load(dump).tasks[0].files
    assert table is not None and table.fds == []


# ------------------------------------------------------------------ the mount


def test_mount_shows_the_state_files_crfs_images_show(dump, tmp_path):
    """tasks/<pid>/ of a CRIU dump has the state files of crfs's own images where the dump
    holds that state: timers, rseq, exe, oom_score_adj, limits, signals, cwd, fd/, fdinfo/
    and, for a zombie, exit."""
    from mountfs import Mount, errors_in_log
    zero = {"isec": 0, "iusec": 0, "vsec": 0, "vusec": 0}
    edit_core(dump, FILES_PID, lambda core: core["tc"].__setitem__("timers", {
        "real": zero, "virt": zero, "prof": zero,
        "posix": [{"it_id": 3, "clock_id": 1, "si_signo": SIGALRM, "it_sigev_notify": 0,
                   "sival_ptr": 7, "overrun": 0, "isec": 1, "insec": 0, "vsec": 2,
                   "vnsec": 0}]}))
    tree = entries(dump, "pstree.img") + [{"pid": 4242, "ppid": FILES_PID, "pgid": FILES_PID,
                                           "sid": FILES_PID, "threads": [4242]}]
    write_img(dump / "pstree.img", "PSTREE", [encode(criu.PSTREE, e) for e in tree])
    write_img(dump / "core-4242.img", "CORE", [encode(criu.CORE, {
        "mtype": 1, "tc": {"task_state": 2, "exit_code": 3 << 8, "personality": 0,
                           "flags": 0, "blk_sigset": 0, "comm": "gone"}})])
    (tmp_path / "m").mkdir()
    mount = Mount(tmp_path / "m")
    shutil.copytree(dump, mount.store / "files")
    mount.mount()
    try:
        task = mount / "files" / "tasks" / str(FILES_PID)
        names = set(p.name for p in task.iterdir())
        assert {"timers", "rseq", "exe", "oom_score_adj", "limits", "signals", "cwd", "root",
                "fd", "fdinfo"} <= names, names
        assert (task / "timers").read_text().startswith("ID: 3\n")
        assert (task / "exe").read_text() == "/tmp/crfs-criu/files_prog\n"
        assert "unix-peer:" in (task / "fdinfo" / "6").read_text()
        zombie = mount / "files" / "tasks" / "4242"
        assert (zombie / "exit").read_text().startswith("exited 3")
    finally:
        mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


NS_FD = 20
CLONE_NEWNET, CLONE_NEWUTS = 0x40000000, 0x04000000


def add_ns_fd(path, ns_id, cflag):
    """fd 20 of the files dump on a namespace file (/proc/self/ns/... opened), as criu
    writes one: an NS file entry naming criu's id of the namespace, and its fdinfo."""
    files = [encode(criu.FILE, e) for e in entries(path, "files.img")]
    nsf = {"id": 99, "ns_id": ns_id, "ns_cflag": cflag, "flags": 0}
    files.append(encode(criu.FILE, {"type": 14, "id": 99, "nsf": nsf}))
    write_img(path / "files.img", "FILES", files)
    fdinfo = [encode(criu.FDINFO, e) for e in entries(path, "fdinfo-2.img")]
    fdinfo.append(encode(criu.FDINFO, {"id": 99, "flags": 0, "type": 14, "fd": NS_FD}))
    write_img(path / "fdinfo-2.img", "FDINFO", fdinfo)


def test_fd_on_the_tasks_own_namespace_is_its_own_after_convert(dump, tmp_path):
    """zdtm's proc-self: criu names the namespace by its own id (the task's net_ns_id is
    2), which the mount shows; the conversion writes "net:[0]", which crfs.ko reopens as
    the restarted task's own network namespace."""
    add_ns_fd(dump, 2, CLONE_NEWNET)
    f = fd_file(load(dump), NS_FD)
    assert (f.kind, f.path) == ("file", "net:criu[2]")
    converted = load(convert.convert(str(dump), str(tmp_path / "ns.ckpt"), "ckpt"))
    f = fd_file(converted, NS_FD)
    assert (f.kind, f.path) == ("file", "net:[0]")


def test_fd_on_another_namespace_is_refused(dump, tmp_path):
    """An fd on a UTS namespace the task is not in (its uts_ns_id is 4): crfs restores no
    namespace, so the conversion refuses it, naming the fd, and writes nothing."""
    add_ns_fd(dump, 3, CLONE_NEWUTS)
    assert fd_file(load(dump), NS_FD).path == "uts:criu[3]"
    with pytest.raises(Unsupported, match=r"fd 20 of task \d+: uts:criu\[3\]: a namespace "
                                          r"the task is not in"):
        convert.convert(str(dump), str(tmp_path / "ns.ckpt"), "ckpt")
    assert list(tmp_path.glob("*.ckpt")) == []
