"""UNIX sockets of a stopped process, for `crfs checkpoint` (issue #11).

What the kernel tells of each socket comes from sock_diag (NETLINK_SOCK_DIAG, the
unix_diag(7) dump /proc/PID/net/unix is made from): its type, state, bound name, the inode
of its peer (so the two ends of a socketpair find each other by inode), its shutdown bits
and listen backlog. The bytes queued for it are read from a copy of the target's fd
(pidfd_getfd(2), which needs the ptrace access crfs has) with MSG_PEEK, which leaves them in
place; a datagram or seqpacket socket is read message by message with SO_PEEK_OFF, reset
afterwards. A queue holding SCM_RIGHTS fds is refused: crfs does not restore them.

A listening socket's connections not accepted yet (UNIX_DIAG_ICONS: the inodes of the
connecting sockets) make each of those a CRFS_UNIX_ICON socket whose peer is the listener
(the kernel's peer is an embryo socket without an inode). Bytes sent into such a
connection (its write queue, UNIX_DIAG_RQLEN) are refused: they sit in the embryo, which no
fd reaches. A path-bound socket's file (UNIX_DIAG_VFS: its inode) gives its mode and owner,
read by stat() through /proc/PID/root when the path still names that inode.
"""

import ctypes
import os
import socket
import stat
import struct

from crfs.errors import CrfsError
from crfs.formats import ckpt as fmt
from crfs.model.image import Blob, UnixSock

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW = 0x1 | 0x2 | 0x4 | 0x8 | 0x10     # NAME | VFS | PEER | ICONS | RQLEN
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN = 4, 6
TCP_LISTEN = 10
SO_PEEK_OFF = 42
SYS_PIDFD_GETFD = 438
PEEK_CHUNK = 256 << 10


class SocketCaptureError(CrfsError):
    """A UNIX socket crfs cannot keep: its queue cannot be read, or holds fds."""


def _attrs(data):
    """{type: payload} of the netlink attributes in `data`."""
    out, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("<HH", data, off)
        if length < 4:
            break
        out[kind] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def unix_diag():
    """{inode: dict(type, state, peer, name, shutdown, rqueue, wqueue, icons, vfs_ino)}
    of every UNIX
    socket of our network namespace. Without the kernel's unix_diag module (it is loaded
    on demand, which a system without modprobe's files cannot), `modprobe unix_diag` once
    more, then the error says why."""
    try:
        return _unix_diag()
    except SocketCaptureError as exc:
        import subprocess      # rarely: not imported by every checkpoint
        probe = subprocess.run(["modprobe", "unix_diag"], capture_output=True, text=True)
        if probe.returncode:
            raise SocketCaptureError(f"{exc} (modprobe unix_diag: "
                                     f"{probe.stderr.strip()[-200:]})") from None
        return _unix_diag()


def _unix_diag():
    req = struct.pack("<BBHIIIII", socket.AF_UNIX, 0, 0, 0xffffffff, 0, UDIAG_SHOW,
                      0xffffffff, 0xffffffff)
    hdr = struct.pack("<IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY,
                      NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    out = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.sendto(hdr + req, (0, 0))
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("<IH", data, off)
                if kind == NLMSG_DONE or length < 16:
                    return out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("<i", data, off + 16)[0]
                    raise SocketCaptureError("sock_diag refused the UNIX socket dump: "
                                             f"{os.strerror(err)}")
                _one(data[off + 16:off + length], out)
                off += (length + 3) & ~3


def _one(msg, out):
    _family, stype, state, _pad, ino = struct.unpack_from("<BBBBI", msg)
    attrs = _attrs(msg[16:])
    rq = struct.unpack("<II", attrs[UNIX_DIAG_RQLEN]) if UNIX_DIAG_RQLEN in attrs else (0, 0)
    icons = attrs.get(UNIX_DIAG_ICONS, b"")
    out[ino] = {
        "type": stype, "state": state, "name": attrs.get(UNIX_DIAG_NAME, b""),
        "peer": struct.unpack("<I", attrs[UNIX_DIAG_PEER])[0] if UNIX_DIAG_PEER in attrs
        else 0,
        "shutdown": attrs[UNIX_DIAG_SHUTDOWN][0] if UNIX_DIAG_SHUTDOWN in attrs else 0,
        "rqueue": rq[0], "wqueue": rq[1],
        "icons": struct.unpack(f"<{len(icons) // 4}I", icons[:len(icons) // 4 * 4]),
        "vfs_ino": struct.unpack_from("<I", attrs[UNIX_DIAG_VFS])[0]
        if len(attrs.get(UNIX_DIAG_VFS, b"")) >= 4 else 0}


def _getfd(pid, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if got < 0:
            err = ctypes.get_errno()
            raise SocketCaptureError(f"pid {pid} fd {fd}: pidfd_getfd: {os.strerror(err)}")
        return got
    finally:
        os.close(pidfd)


def _peek_one(sock, what):
    """One message (or the stream's bytes) peeked, or None when nothing is queued."""
    try:
        data, anc, flags, _ = sock.recvmsg(PEEK_CHUNK, socket.CMSG_SPACE(4 * 253),
                                           socket.MSG_PEEK | socket.MSG_DONTWAIT |
                                           socket.MSG_TRUNC)
    except BlockingIOError:
        return None
    for level, kind, body in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(len(body) // 4):
                os.close(struct.unpack_from("<i", body, 4 * i)[0])
            raise SocketCaptureError(f"{what}: fds (SCM_RIGHTS) queued in it are not kept")
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise SocketCaptureError(f"{what}: a message of more than {PEEK_CHUNK} bytes queued")
    return data


def queued(pid, fd, stype, total, what):
    """The messages queued for the socket at `pid`'s `fd`: a list of bytes (a stream's
    bytes as one); `total`: the bytes sock_diag says a seqpacket socket has queued. Left
    in place."""
    sock = socket.socket(fileno=_getfd(pid, fd))
    try:
        if stype == socket.SOCK_STREAM:
            data = b""
            while len(data) <= fmt.CRFS_UNIX_MAX_DATA:
                sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, len(data))
                more = _peek_one(sock, what)
                if not more:
                    break
                data += more
            msgs = [data] if data else []
        else:
            msgs, size = [], 0
            sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
            while len(msgs) <= fmt.CRFS_UNIX_MAX_MSGS:
                if stype == socket.SOCK_SEQPACKET and size >= total:
                    break       # (a shut seqpacket reads empty messages at its end)
                msg = _peek_one(sock, what)
                if msg is None:
                    break
                msgs.append(msg)
                size += len(msg)
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, -1)
    finally:
        sock.close()
    if len(msgs) > fmt.CRFS_UNIX_MAX_MSGS or sum(map(len, msgs)) > fmt.CRFS_UNIX_MAX_DATA:
        raise SocketCaptureError(f"{what}: more than {fmt.CRFS_UNIX_MAX_MSGS} messages or "
                                 f"{fmt.CRFS_UNIX_MAX_DATA} bytes queued")
    return msgs


def _listeners(diag):
    """{inode of a connecting socket: its listener's inode}, from the listeners' icons."""
    return {icon: ino for ino, info in diag.items() for icon in info["icons"] if icon}


def _socket_file(pid, info, sock):
    """The mode and owner of the file a path-bound socket made, when its path (seen from
    the process's root) still names that inode; else left 0 (not known)."""
    path = info["name"].split(b"\0", 1)[0]
    if not path.startswith(b"/") or not info["vfs_ino"]:
        return
    try:
        st = os.stat(f"/proc/{pid}/root".encode() + path, follow_symlinks=False)
    except OSError:
        return
    if st.st_ino == info["vfs_ino"] and stat.S_ISSOCK(st.st_mode):
        sock.mode, sock.uid, sock.gid = st.st_mode, st.st_uid, st.st_gid


def capture_unix(pid, fd, ino, registry):
    """The UnixSock of `pid`'s `fd` (socket:[ino]), or None when it is no UNIX socket."""
    diag = getattr(registry, "unix_diag", None)
    if diag is None:
        diag = registry.unix_diag = unix_diag()
        registry.unix_listeners = _listeners(diag)
    info = diag.get(ino)
    if info is None:
        return None
    sock = UnixSock(ino=ino, peer=info["peer"], type=info["type"], state=info["state"],
                    shutdown=info["shutdown"], name=info["name"])
    _socket_file(pid, info, sock)
    listener = getattr(registry, "unix_listeners", {}).get(ino)
    if listener and not sock.peer and info["type"] != socket.SOCK_DGRAM:
        if info["wqueue"]:
            raise SocketCaptureError(f"pid {pid} fd {fd} (socket:[{ino}]): bytes sent into a "
                                     "connection not accepted yet are not kept")
        sock.icon, sock.peer = True, listener
    if info["state"] == TCP_LISTEN or sock.icon:
        sock.backlog = info["wqueue"] if info["state"] == TCP_LISTEN else 0
        return sock
    msgs = queued(pid, fd, info["type"], info["rqueue"], f"pid {pid} fd {fd} (socket:[{ino}])")
    data = b"".join(msgs)
    sock.msgs = tuple(len(m) for m in msgs)
    sock.data = Blob(registry.source, registry.source.append(data), len(data))
    return sock
