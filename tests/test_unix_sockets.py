"""UNIX sockets in linux-cr images (CRFS_FILE_UNIX, issue #11): the golden C writer's
socketpair read back, written back byte for byte, and lying records refused."""

import io
import struct

import pytest

from crfs.errors import FormatError
from crfs.formats import ckpt as fmt
from crfs.formats.source import MemorySource
from crfs.model.ckpt import dump, load


@pytest.fixture(params=[64, 32])
def golden(request, run_golden):
    path, _ = run_golden("ckpt_files_golden", request.param)
    return path.read_bytes()


def _pair(image):
    child = image.tasks[2]
    return child.files.get(12), child.files.get(13)


def test_socketpair_read_from_the_golden_image(golden):
    a, b = _pair(load(MemorySource(golden)))
    assert (a.file.kind, a.file.link(), b.file.link()) == ("socket", "socket:[4343]",
                                                           "socket:[4344]")
    sa, sb = a.file.sock, b.file.sock
    assert (sa.peer, sb.peer, sa.type, sa.state, sa.shutdown, sb.shutdown) == (
        4344, 4343, 5, 1, 0, 2)
    assert (sa.msgs, sa.data.read(), sb.msgs, sb.data) == ((2, 5), b"hithere", (), None)
    assert (b.cloexec, b.file.flags) == (True, 0o4002)


def test_socket_file_mode_and_owner_from_the_golden_image(golden):
    """mode, uid, gid of crfs_hdr_file_unix (set by the C writer on one end): read, shown
    in fdinfo, written back."""
    a, b = _pair(load(MemorySource(golden)))
    assert (b.file.sock.mode, b.file.sock.uid, b.file.sock.gid) == (0o140640, 18943, 58467)
    assert (a.file.sock.mode, a.file.sock.icon, b.file.sock.icon) == (0, False, False)
    from crfs.render import fdinfo
    assert "unix-file:\t0140640 18943 58467\n" in fdinfo(b)
    out = io.BytesIO()
    dump(load(MemorySource(golden)), out)
    again = load(MemorySource(out.getvalue())).tasks[2].files.get(13).file.sock
    assert (again.mode, again.uid, again.gid) == (0o140640, 18943, 58467)


def test_unaccepted_connection_flag(golden):
    """flags CRFS_UNIX_ICON: a connection not accepted yet, its peer the listener's inode
    (unknown flag bits, a mode that is no socket's: test_lying_unix_records_are_refused)."""
    data = bytearray(golden)
    struct.pack_into("<I", data, _unix_record(golden) + 92, fmt.CRFS_UNIX_ICON)
    a, _ = _pair(load(MemorySource(bytes(data))))
    assert a.file.sock.icon and a.file.sock.peer == 4344
    from crfs.render import fdinfo
    assert "unix-accepted:\tno\n" in fdinfo(a)
    out = io.BytesIO()
    dump(load(MemorySource(bytes(data))), out)
    assert load(MemorySource(out.getvalue())).tasks[2].files.get(12).file.sock.icon


def test_socketpair_written_back_byte_for_byte(golden):
    out = io.BytesIO()
    dump(load(MemorySource(golden)), out)
    assert load(MemorySource(out.getvalue())).tasks[2].files.get(12).file.sock.msgs == (2, 5)


def _unix_record(data):
    for info in fmt.records(MemorySource(data)):
        if info.name == "CKPT_HDR_FILE" and info.note == "CRFS_FILE_UNIX":
            return info.offset
    raise AssertionError("no CRFS_FILE_UNIX")


@pytest.mark.parametrize("field, value, reason", [
    (84, 9, "bytes for 2 messages of 9 bytes"),         # data_len
    (80, 5000, "5000 messages"),                         # nr_msgs
    (88, 109, "name_len 109"),                           # addr_len
    (92, 2, "flags 0x2"),                                # flags: only CRFS_UNIX_ICON
    (204, 0o100644, "mode 0o100644"),                    # mode: a socket file's or 0
])
def test_lying_unix_records_are_refused(golden, field, value, reason):
    data = bytearray(golden)
    struct.pack_into("<I", data, _unix_record(golden) + field, value)
    with pytest.raises(FormatError, match=reason):
        load(MemorySource(bytes(data)))


def test_message_lengths_must_add_up(golden):
    data = bytearray(golden)
    buffer = _unix_record(golden) + fmt.crfs_hdr_file_unix.sizeof()
    struct.pack_into("<I", data, buffer + 8, 3)          # "hi" said to be 3 bytes
    with pytest.raises(FormatError, match="add to 8, not 7"):
        load(MemorySource(bytes(data)))


def test_fdinfo_shows_the_socket(golden):
    from crfs.render import fdinfo
    a, b = _pair(load(MemorySource(golden)))
    assert fdinfo(a) == ("pos:\t0\nflags:\t02\nunix-type:\t5\nunix-state:\t1\n"
                         "unix-peer:\t4344\nunix-shutdown:\t0\nunix-queued:\t2 7\n")
    assert fdinfo(b).endswith("unix-shutdown:\t2\nunix-queued:\t0 0\n"
                              "unix-file:\t0140640 18943 58467\n")


def test_the_mount_shows_the_sockets(mount, run_golden):
    """fd/<n> of a UNIX socket reads socket:[ino] and fdinfo/<n> has its lines, through a
    real FUSE mount (ls, readlink, cat)."""
    import shutil

    path, _ = run_golden("ckpt_files_golden", 64)
    shutil.copy(path, mount.store / "files.ckpt")
    mount.mount()
    assert mount.sh("readlink files.ckpt/tasks/800/fd/12").stdout == "socket:[4343]\n"
    assert "13 -> socket:[4344]" in mount.sh("ls -l files.ckpt/tasks/800/fd").stdout
    info = mount.sh("cat files.ckpt/tasks/800/fdinfo/13").stdout
    assert info == (f"pos:\t0\nflags:\t0{0o4002 | 0o2000000:o}\nunix-type:\t5\n"
                    "unix-state:\t1\nunix-peer:\t4343\nunix-shutdown:\t2\nunix-queued:\t0 0\n"
                    "unix-file:\t0140640 18943 58467\n")


def test_crfs_checkpoint_keeps_the_queues_in_place(build_c, tmp_path):
    """unix_target checkpointed by `crfs checkpoint --via ptrace` (stopped, then let go):
    the image pairs the ends by inode, has each end's queued messages with their
    boundaries and the shutdown bits; the program's own checks still pass afterwards (the
    queues were peeked, not read)."""
    import os
    import signal
    import subprocess
    import time

    from crfs.checkpoint import checkpoint
    from crfs.model import registry

    out = tmp_path / "out"
    with open(out, "w") as f:
        proc = subprocess.Popen([str(build_c("unix_target", 64)), str(tmp_path), "600"],
                                stdout=f)
    try:
        while out.read_text().count("\n") < 2:
            time.sleep(0.05)
        checkpoint(proc.pid, tmp_path / "u.ckpt", after="stop", via="ptrace")
        os.kill(proc.pid, signal.SIGCONT)
        image = registry.open_image(tmp_path / "u.ckpt")
        fds = {d.fd: d.file for d in image.tasks[0].files.fds}
        s = {fd: fds[fd].sock for fd in range(4, 12)}
        assert (s[4].peer, s[5].peer) == (s[5].ino, s[4].ino)
        assert (s[4].data.read(), s[5].data.read(), s[4].type) == (b"to four", b"to five!", 1)
        assert (s[6].msgs, s[6].data.read(), s[7].msgs, s[6].type) == ((1, 2, 3), b"abbccc",
                                                                        (), 2)
        assert (s[8].shutdown, s[9].shutdown, s[9].msgs, s[9].type) == (2, 1, (3, 3), 5)
        assert (s[10].peer, s[10].state, s[11].peer, s[11].shutdown) == (0, 7, 0, 3)
        assert fds[4].link() == f"socket:[{s[4].ino}]"
        (tmp_path / "stop").touch()
        assert proc.wait(timeout=30) == 3
        assert out.read_text().splitlines()[-1] == "unix=ok"
    finally:
        proc.kill()
        proc.wait()
