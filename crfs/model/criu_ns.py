"""What a CRIU dump says of its tasks' namespaces and cgroups, its SysV shared memory and
its inet sockets, into the model (Task.namespaces, Task.cgroup, Task.ipc, Image.namespaces,
OpenFile.inet). Used by crfs.model.criu_load; docs/format-criu.md, "Namespaces".

CRIU names a namespace by an id of its own (ids-PID.img, the inventory's root_ids for
criu's own namespaces), not by the inode /proc shows: a link reads "net:criu[2]" where
/proc would say "net:[4026531840]". It dumps the namespaces that differ from its own
(utsns-ID.img, ipcns-*-ID.img, ...), and writes cgroup.img only when a task is in other
cgroups than criu.
"""

from crfs.errors import FormatError
from crfs.model.image import InetSock, IpcNamespace, Namespace, ShmSegment, SysvShm

MAX_SHM = 1 << 47           # bytes of a SysV segment: x86_64's user address space

# /proc/PID/ns names and the task_kobj_ids_entry fields of their criu ids.
NS_FIELDS = (("cgroup", "cgroup_ns_id"), ("ipc", "ipc_ns_id"), ("mnt", "mnt_ns_id"),
             ("net", "net_ns_id"), ("pid", "pid_ns_id"), ("time", "time_ns_id"),
             ("user", "user_ns_id"), ("uts", "uts_ns_id"))
# The dump's files of a namespace criu dumped: PREFIX-ID.img.
NS_FILES = {"ipc": ("ipcns-var", "ipcns-shm", "ipcns-msg", "ipcns-sem"), "uts": ("utsns",),
            "net": ("netns", "netdev", "ifaddr", "route", "route6", "rule", "iptables",
                    "ip6tables", "nftables"),
            "mnt": ("mountpoints",), "user": ("userns",)}


# CLONE_NEW* flags (an ns_file_entry's ns_cflag) by /proc/PID/ns name.
NS_CLONE_FLAGS = {"time": 0x80, "mnt": 0x20000, "cgroup": 0x02000000, "uts": 0x04000000,
                  "ipc": 0x08000000, "user": 0x10000000, "pid": 0x20000000,
                  "net": 0x40000000}
NS_BY_CLONE_FLAG = {flag: name for name, flag in NS_CLONE_FLAGS.items()}


def ns_link(ns_type, ns_id):
    """The link text of a namespace known by criu's id only."""
    return f"{ns_type}:criu[{ns_id}]"


def task_namespaces(ids):
    """{/proc/PID/ns name: link} of a task_kobj_ids_entry (None when it has no ns id)."""
    found = {name: ns_link(name, ids[key]) for name, key in NS_FIELDS if key in ids}
    return found or None


def image_namespaces(tasks, root_ids, names, uts):
    """A Namespace for each namespace the tasks are in: the dump's own (criu dumped it:
    its files) or criu's own at dump time (not in the dump). uts(id): (nodename,
    domainname) of a dumped UTS namespace."""
    seen = {}
    for task in tasks:
        for name, link in (task.namespaces or {}).items():
            seen.setdefault((name, link), []).append(task.pid)
    out = []
    for (name, link), pids in sorted(seen.items()):
        ns_id = int(link[link.index("[") + 1:-1])
        key = dict(NS_FIELDS)[name]
        own = root_ids is None or root_ids.get(key) != ns_id
        files = tuple(sorted(n for n in names for prefix in NS_FILES.get(name, ())
                             if n == f"{prefix}-{ns_id}.img"))
        note = ""
        if name == "uts" and f"utsns-{ns_id}.img" in names:
            note = "nodename %s, domainname %s" % uts(ns_id)
        out.append(Namespace(type=name, link=link, own=own, files=files, note=note))
    return out


def cgroup_text(tc, inventory, sets, where):
    """/proc/PID/cgroup of a task (its core's tc.cg_set among cgroup.img's sets): one
    "HIERARCHY:CONTROLLERS:PATH" line per controller. criu does not record hierarchy ids:
    cgroup v2's (name "") is 0, a v1 hierarchy's is "?". None when the task is in criu's
    own cgroups (cg_set = the inventory's root_cg_set: criu records nothing of them) or
    its core has no cg_set."""
    cg_set = tc.get("cg_set")
    if cg_set is None:
        return None
    found = sets.get(cg_set)
    if found is None:
        if cg_set == inventory.get("root_cg_set"):
            return None
        raise FormatError(f"cg_set {cg_set} is not in cgroup.img", record=where)
    return "".join(f"{'0' if not m['name'] else '?'}:{m['name']}:{m['path']}\n"
                   for m in found.get("ctls", ()))     # a repeated field may be absent


def inet_sock(sk, netns):
    """The InetSock of an inet_sk_entry (`netns`: the link of criu's ns_id, if any)."""
    return InetSock(ino=sk["ino"], family=sk["family"], type=sk["type"], proto=sk["proto"],
                    state=sk["state"], src=tuple(sk.get("src_addr", ())),
                    src_port=sk["src_port"], dst=tuple(sk.get("dst_addr", ())),
                    dst_port=sk["dst_port"], backlog=sk["backlog"], netns=netns)


def ipc_namespace(loader, ns_id):
    """The IpcNamespace of criu's IPC namespace `ns_id` (ipcns-shm-ID.img: each segment
    and its pages, pagemap-shmem-SHMID.img), None when the dump does not carry it."""
    name = f"ipcns-shm-{ns_id}.img"
    if name not in loader.names:
        return None
    ipc = IpcNamespace(name=ns_link("ipc", ns_id))
    base = loader.dir.offset_of(name)
    for e in loader.entries(name):
        f, desc = e.fields, e.fields["desc"]
        if f["size"] > MAX_SHM:
            raise FormatError(f"segment of {f['size']} bytes (at most {MAX_SHM})",
                              offset=e.offset, record=f"{name}: entry {e.index} (ipc_shm_entry)")
        shm = SysvShm(key=desc["key"], shmid=desc["id"], mode=desc["mode"], uid=desc["uid"],
                      gid=desc["gid"], cuid=desc["cuid"], cgid=desc["cgid"], size=f["size"],
                      source=loader.dir, where=f"{name}: entry {e.index} (ipc_shm_entry)")
        if f.get("in_pagemaps"):
            shm.segment = loader.segment(desc["id"], None, key=("sysv", ns_id, desc["id"]))
            shm.segment.size = max(shm.segment.size, f["size"])
            last = shm.segment.pages.last if len(shm.segment.pages) else None
            if last is not None and last >= f["size"]:
                raise FormatError(f"page {last:#x} past the segment's {f['size']} bytes",
                                  record=f"pagemap-shmem-{desc['id']}.img")
        else:
            from crfs.model.image import Blob
            shm.data = Blob(loader.dir, base + e.data, f["size"])
        if any(s.shmid == shm.shmid for s in ipc.shms):
            raise FormatError(f"shmid {shm.shmid} twice", offset=e.offset,
                              record=f"{name}: entry {e.index} (ipc_shm_entry)")
        ipc.shms.append(shm)
    ipc.shms.sort(key=lambda s: s.shmid)
    return ipc


def sysv_shm(ipc, shmid, where):
    """The SysvShm of segment `shmid` a VMA maps, its `segment` made if need be;
    FormatError when the dump's IPC namespace has no such segment. None when the dump does
    not carry the namespace."""
    if ipc is None:
        return None
    for shm in ipc.shms:
        if shm.shmid == shmid:
            if shm.segment is None:         # bytes kept in one piece: not mapped
                shm.segment = ShmSegment(objref=shmid, size=shm.size)
            return shm
    raise FormatError(f"SysV shmid {shmid} is not in the dump's IPC namespace "
                      f"({ipc.name})", record=where)
