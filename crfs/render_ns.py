"""Text of the namespace, cgroup, SysV IPC and inet socket files of an image's tree
(crfs/fs/ns_tree.py): the columns of /proc's files that the image has, under /proc's
column names. docs/format-criu.md, "Namespaces, cgroups, SysV shm, inet sockets"."""

AF_INET, AF_INET6 = 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17
# /proc/net file name -> (family, protocol)
NET_FILES = {"tcp": (AF_INET, IPPROTO_TCP), "udp": (AF_INET, IPPROTO_UDP),
             "tcp6": (AF_INET6, IPPROTO_TCP), "udp6": (AF_INET6, IPPROTO_UDP)}
SHM_HEADER = "       key      shmid perms                  size   uid   gid  cuid  cgid\n"


def namespaces(found):
    """<image>/namespaces: one line per namespace the tasks are in: its /proc name, its
    link text, and whether the image carries it (its files) or it was the checkpointer's
    own (nothing of it in the image)."""
    lines = []
    for ns in found:
        if ns.own:
            where = "dumped: " + (" ".join(ns.files) if ns.files else "no file of its own")
        else:
            where = "the dumping criu's own: not in the dump"
        note = f"; {ns.note}" if ns.note else ""
        lines.append(f"{ns.type} {ns.link} {where}{note}\n")
    return "".join(lines)


def sysvipc_shm(ipc):
    """tasks/<pid>/sysvipc/shm: /proc/sysvipc/shm's columns the image has (cpid, lpid,
    nattch, times, rss and swap are not in a CRIU dump)."""
    return SHM_HEADER + "".join(
        f"{s.key if s.key < 1 << 31 else s.key - (1 << 32):10d} {s.shmid:10d}  "
        f"{s.mode & 0o777:4o} {s.size:21d} {s.uid:5d} {s.gid:5d} {s.cuid:5d} {s.cgid:5d}\n"
        for s in ipc.shms)


def inet_socks(image, task):
    """The inet sockets of the image (each once, by inode) in `task`'s net namespace
    (all of them when the image does not say which)."""
    netns = (task.namespaces or {}).get("net")
    found = {}
    for t in image.tasks:
        for fd in (t.files.fds if t.files is not None else ()):
            sk = fd.file.inet
            if sk is not None and (netns is None or sk.netns in (None, netns)):
                found.setdefault(sk.ino, sk)
    return [found[ino] for ino in sorted(found)]


def _addr(words, family):
    count = 4 if family == AF_INET6 else 1
    words = (list(words) + [0] * count)[:count]
    return "".join(f"{w:08X}" for w in words)


def proc_net(socks, name):
    """tasks/<pid>/net/{tcp,udp,tcp6,udp6}: /proc/net/tcp's sl, addresses, st and inode
    columns (queues, timers and uid are not in a CRIU dump). sl numbers the rows (the
    kernel's is a hash bucket)."""
    family, proto = NET_FILES[name]
    # /proc's headers and column widths: udp's sl is 5 wide, its header's too (not udp6's)
    sl = 5 if proto == IPPROTO_UDP else 4
    if family == AF_INET6:
        lines = ["  sl  local_address" + " " * 25 + "remote_address" + " " * 24 + "st inode\n"]
    else:
        lines = [" " * (sl - 2) + "sl  local_address rem_address   st inode\n"]
    width = 32 if family == AF_INET6 else 8
    for sk in socks:
        if sk.family != family or sk.proto != proto:
            continue
        local = f"{_addr(sk.src, family)}:{sk.src_port:04X}"
        remote = f"{_addr(sk.dst, family)}:{sk.dst_port:04X}"
        lines.append(f"{len(lines) - 1:{sl}d}: {local.ljust(width + 5)} {remote.ljust(width + 5)} "
                     f"{sk.state:02X} {sk.ino}\n")
    return "".join(lines)
