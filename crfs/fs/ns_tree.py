"""tasks/<pid>/ns/, cgroup, sysvipc/ and net/, and <image>/namespaces: what an image
says of a task's namespaces, cgroups, SysV shared memory and inet sockets (CRIU dumps
carry them: crfs/model/criu_ns.py). Text from crfs/render_ns.py."""

from crfs import render_ns
from crfs.fs.nodes import RangeFile, StaticDir, Symlink, TextFile


def task_children(parent, image, task):
    """(name, node) of a TaskDir's children of this module."""
    mtime = parent.mtime_ns
    if task.namespaces:
        yield "ns", NsDir(parent.key + ("ns",), task.namespaces, mtime)
    if task.cgroup is not None:
        yield "cgroup", TextFile(parent.key + ("cgroup",), lambda: task.cgroup, mtime)
    if task.ipc is not None:
        yield "sysvipc", SysvipcDir(parent.key + ("sysvipc",), task.ipc, mtime)
    socks = render_ns.inet_socks(image, task)
    if socks:
        yield "net", NetDir(parent.key + ("net",), socks, mtime)


def image_children(parent, image, mtime):
    if image.namespaces:
        yield "namespaces", TextFile(parent.key + ("namespaces",),
                                     lambda: render_ns.namespaces(image.namespaces), mtime)


class NsDir(StaticDir):
    """ns/<type> -> what /proc/<pid>/ns/<type> linked to ("net:[4026531840]"), or for a
    CRIU dump the namespace's criu id ("net:criu[2]": criu records no inode)."""

    def __init__(self, key, links, mtime_ns):
        super().__init__(key, mtime_ns)
        self.links = links

    def make_children(self):
        for name in sorted(self.links):
            yield name, Symlink(self.key + (name,), self.links[name], self.mtime_ns)


class SysvipcDir(StaticDir):
    """sysvipc/: shm (the segments of the task's IPC namespace, as /proc/sysvipc/shm)
    and shm-<shmid>, each segment's bytes (zeros where none were dumped)."""

    def __init__(self, key, ipc, mtime_ns):
        super().__init__(key, mtime_ns)
        self.ipc = ipc

    def make_children(self):
        yield "shm", TextFile(self.key + ("shm",), lambda: render_ns.sysvipc_shm(self.ipc),
                              self.mtime_ns)
        for shm in self.ipc.shms:
            name = f"shm-{shm.shmid}"
            yield name, RangeFile(self.key + (name,), shm.size, shm.read, self.mtime_ns)


class NetDir(StaticDir):
    """net/: tcp, udp, tcp6, udp6 as /proc/<pid>/net/ shows them, for the inet sockets
    of the image in the task's net namespace."""

    def __init__(self, key, socks, mtime_ns):
        super().__init__(key, mtime_ns)
        self.socks = socks

    def make_children(self):
        for name in render_ns.NET_FILES:
            yield name, TextFile(self.key + (name,),
                                 lambda name=name: render_ns.proc_net(self.socks, name),
                                 self.mtime_ns)
