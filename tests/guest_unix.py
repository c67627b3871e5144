"""Guest side of the UNIX socket tests (tests/test_kmod_guest.py, step "unix";
kmod/crfs_socket.c, kmod/crfs-restart-unix.h, crfs/checkpoint/sockets.py).

unix_target (tests/c/unix_target.c: stream, datagram and seqpacket socketpairs with
messages queued both ways, a shut end, an unconnected socket, a socket whose peer was
closed) is checkpointed both ways, restarted by crfs-restart, and runs its own checks.
Then the refusals: malformed CRFS_FILE_UNIX records (CHECK), sockets handed in that do
not fit their records (RESTART_FILES, in a forked child), and nothing handed in (-A).
Runs inside the guest; decides nothing.
"""

import os
import socket
import struct

import guest_anonfd as ga
import guest_files as gf
from guest_util import stage

WORK = "/tmp/crfs-unix"
FILE_UNIX = 112
UNIX_FDS = range(4, 12)


def sockets_of(image):
    """{objref: dict(type, state, flags, sock, peer, mode, offset of its FILE)} of the
    image's UNIX sockets."""
    data, files = gf.file_objects(image)
    out = {}
    for objref, offset in files:
        if struct.unpack_from("<I", data, offset + 8)[0] == FILE_UNIX:
            sock, peer = struct.unpack_from("<ii", data, offset + 48)
            out[objref] = {"type": struct.unpack_from("<H", data, offset + 66)[0],
                           "sock": sock, "peer": peer, "offset": offset,
                           "state": struct.unpack_from("<I", data, offset + 68)[0],
                           "flags": struct.unpack_from("<I", data, offset + 92)[0],
                           "mode": struct.unpack_from("<III", data, offset + 204)}
    return out


def type_sock_peer(socks):
    """{objref as text: [type, sock, peer]}: what the host compares."""
    return {str(k): [v["type"], v["sock"], v["peer"]] for k, v in socks.items()}


def run_one(label, exe, work, restarter, via):
    return ga.run_target(label, exe, work, restarter, via,
                         lambda pid: gf.fd_links(pid, UNIX_FDS))


def patched_records(image, socks):
    """Malformed CRFS_FILE_UNIX records, each refused by CHECK (errno, reason)."""
    with open(image, "rb") as f:
        data = f.read()
    queued = [sock["offset"] for sock in socks.values()
              if struct.unpack_from("<I", data, sock["offset"] + 80)[0] == 3][0]   # "a" "bb" "ccc"
    own = struct.unpack_from("<i", data, queued + 48)[0]
    patches = {
        "family": (queued + 64, "<H", 2),
        "type": (queued + 66, "<H", 3),
        "shutdown": (queued + 72, "<I", 4),
        "msgs_many": (queued + 80, "<I", 5000),
        "data_lies": (queued + 84, "<I", 7),
        "addr_long": (queued + 88, "<I", 200),
        "peer_self": (queued + 52, "<i", own),
        "lengths_lie": (queued + 216 + 8, "<I", 2),     # "a" said to be 2 bytes
        "rdonly": (queued + 16, "<I", 0),
    }
    return ga.fields_refused(image, patches)


def lying_tables(image, socks, restarter, work):
    """Sockets handed in that do not fit their records: refused before anything changes."""
    by_type = {}
    for objref, sock in sorted(socks.items()):
        by_type.setdefault(sock["type"], []).append(objref)
    s4, s5 = by_type[socket.SOCK_STREAM][:2]       # fds 4 and 5, with queues
    out = {}
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    g, h = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pr, pw = os.pipe2(os.O_CLOEXEC)
    try:
        out["pipe_as_socket"] = ga.handed_call(image, [(s4, pr)])
        out["dgram_as_stream"] = ga.handed_call(image, [(s4, g.fileno()), (s5, h.fileno())])
        out["queue_empty"] = ga.handed_call(image, [(s4, a.fileno()), (s5, b.fileno())])
        b.send(b"to four")
        a.send(b"to five!")
        d.send(b"to four")
        c.send(b"to five!")
        out["two_pairs"] = ga.handed_call(image, [(s4, a.fileno()), (s5, d.fileno())])
        out["one_end"] = ga.handed_call(image, [(s4, a.fileno())])
    finally:
        for s in (a, b, c, d, g, h):
            s.close()
        os.close(pr)
        os.close(pw)
    out["not_handed_in"] = gf.outcome(gf.restart(image, restarter,
                                                 os.path.join(work, "none.out"), ("-A",)))
    return out


def step(manifest):
    work = WORK
    exe = stage(work, {"unix_target": manifest["unix_target"]})["unix_target"]
    restarter = manifest["restarter"]
    result = {}
    try:
        result["ptrace"], image = run_one("ptrace", exe, work, restarter, "ptrace")
        result["kernel"], kimage = run_one("kernel", exe, work, restarter, "kernel")
        if image:
            socks = sockets_of(image)
            result["socks"] = type_sock_peer(socks)
            if kimage:
                result["kernel_socks"] = type_sock_peer(sockets_of(kimage))
            result["records"] = patched_records(image, socks)
            result["lying"] = lying_tables(image, socks, restarter, work)
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        result["error"] = repr(exc)
    return result
