"""Namespaces, cgroup, SysV shared memory and inet sockets of CRIU dumps (issue #15): the
real criu 3.17 dump tests/data/criu/ns (ns_prog.c: its own IPC and UTS namespaces, cgroup
v2 group /crfs-ns, two SysV segments, a TCP listener and a bound UDP socket) mounted and
read with readlink, cat and cmp, against the /proc truth taken at dump time
(tests/data/criu/ns.truth) and `crit show` of the same images."""

import os
import re
import shutil
import stat

import pytest

from mountfs import Mount, errors_in_log
from test_criu import DATA, crit

PAGE = 4096


def truth(name):
    return (DATA / "ns.truth" / name).read_text()


def markers():
    """{"pid", "shm", "shm_addr", "shm2", "tcp", "tcp_port", "udp", "udp_port", "tcp6",
    "tcp6_port"}."""
    line = next(s for s in truth("out.txt").splitlines() if s.startswith("proc "))
    m = re.fullmatch(r"proc (\d+) shm=(\d+)@0x([0-9a-f]+) shm2=(\d+) tcp=(\d+):(\d+) "
                     r"udp=(\d+):(\d+) tcp6=(\d+):(\d+)", line)
    keys = ("pid", "shm", "shm_addr", "shm2", "tcp", "tcp_port", "udp", "udp_port", "tcp6",
            "tcp6_port")
    return {k: int(v, 16 if k == "shm_addr" else 10) for k, v in zip(keys, m.groups())}


PID = markers()["pid"]
# the index of the SysV segment's VMA in mm-PID.img (crit: its status has VMA_AREA_SYSVIPC)
SYSV_VMA = next(i for i, v in enumerate(crit("ns", f"mm-{PID}")[0]["vmas"])
                if "VMA_AREA_SYSVIPC" in v["status"])


@pytest.fixture(scope="module")
def ns_mount(tmp_path_factory):
    mount = Mount(tmp_path_factory.mktemp("criu-ns"))
    for name in ("ns", "files"):
        shutil.copytree(DATA / name, mount.store / name)
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def tdir(mount, name="ns"):
    pid = markers()["pid"] if name == "ns" else 144
    return mount / name / "tasks" / str(pid)


def proc_links(text):
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_ns_links_name_criu_ids_and_tell_the_namespaces_apart(ns_mount):
    """ns/ has /proc's names; each link is criu's id of the namespace (criu records no
    inode): the IPC and UTS namespaces ns_prog made are its own, the others criu's."""
    ns = tdir(ns_mount) / "ns"
    ids = crit("ns", "ids-" + str(markers()["pid"]))[0]
    root = crit("ns", "inventory")[0]["root_ids"]
    links = {n: os.readlink(ns / n) for n in os.listdir(ns)}
    assert links == {n: f"{n}:criu[{ids[n + '_ns_id']}]" for n in
                     ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")}
    assert all(stat.S_ISLNK(os.lstat(ns / n).st_mode) for n in links)
    # /proc at dump time: the task's ipc and uts inodes differ from the dumper's, the rest
    # are the same; criu's ids say the same.
    task, dumper = proc_links(truth(f"ns-{PID}.txt")), proc_links(truth("ns-self.txt"))
    for name in links:
        assert (task[name] == dumper[name]) == (ids[f"{name}_ns_id"] ==
                                                root[f"{name}_ns_id"]), name
    assert {n for n in links if task[n] != dumper[n]} == {"ipc", "uts"}


def test_image_namespaces_file(ns_mount):
    text = (ns_mount / "ns" / "namespaces").read_text()
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert sorted(lines) == ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
    assert lines["ipc"] == "ipc ipc:criu[9] dumped: ipcns-shm-9.img ipcns-var-9.img"
    assert lines["uts"] == ("uts uts:criu[10] dumped: utsns-10.img; nodename "
                            f"{truth('hostname').strip()}, domainname (none)")
    assert lines["net"] == "net net:criu[2] the dumping criu's own: not in the dump"


def test_cgroup_is_proc_pid_cgroup(ns_mount):
    assert (tdir(ns_mount) / "cgroup").read_text() == truth(f"cgroup-{PID}") == "0::/crfs-ns\n"


def test_no_cgroup_file_when_criu_recorded_none(ns_mount):
    """The files dump's task was in criu's own cgroup: criu wrote no cgroup.img."""
    assert not (DATA / "files" / "cgroup.img").exists()
    assert "cgroup" not in os.listdir(tdir(ns_mount, "files"))
    assert "sysvipc" not in os.listdir(tdir(ns_mount, "files"))
    assert sorted(os.listdir(tdir(ns_mount, "files") / "ns")) == [
        "cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]


def shm_rows(text):
    """{shmid: {column: value}} of a /proc/sysvipc/shm-like table."""
    lines = text.splitlines()
    head = lines[0].split()
    return {int(row[1]): dict(zip(head, row)) for row in (s.split() for s in lines[1:])}


def test_sysvipc_shm_matches_proc(ns_mount):
    ours = shm_rows((tdir(ns_mount) / "sysvipc" / "shm").read_text())
    proc = shm_rows(truth("sysvipc-shm"))
    assert sorted(ours) == sorted(proc) == [markers()["shm"], markers()["shm2"]]
    for shmid, row in ours.items():
        assert set(row) == {"key", "shmid", "perms", "size", "uid", "gid", "cuid", "cgid"}
        assert row == {k: proc[shmid][k] for k in row}, shmid


def test_sysv_segments_bytes(ns_mount):
    m = markers()
    shm = tdir(ns_mount) / "sysvipc" / f"shm-{m['shm']}"
    data = shm.read_bytes()
    assert len(data) == 3 * PAGE == os.stat(shm).st_size
    assert data[:21] == b"crfs-sysv-shm page 0\0"
    assert data[PAGE:2 * PAGE] == bytes(PAGE)       # never touched: not dumped, zeros
    assert data[2 * PAGE:2 * PAGE + 21] == b"crfs-sysv-shm page 2\0"
    # the unattached segment: 100 bytes, in the namespace only
    other = (tdir(ns_mount) / "sysvipc" / f"shm-{m['shm2']}").read_bytes()
    assert other == b"unattached segment".ljust(100, b"\0")
    assert ns_mount.sh(f"dd if=ns/tasks/{m['pid']}/sysvipc/shm-{m['shm']} bs=1 skip={2 * PAGE} "
                       "count=20 status=none").stdout == "crfs-sysv-shm page 2"


def test_sysv_mapping_in_maps_and_mem(ns_mount):
    """The segment's mapping: /proc's name in maps, and the segment's bytes at its
    address in mem and in its VMA's data."""
    m = markers()
    maps = (tdir(ns_mount) / "mm" / "maps").read_text()
    line = next(s for s in maps.splitlines() if s.startswith(f"{m['shm_addr']:x}-"))
    proc = next(s for s in truth(f"maps-{PID}").splitlines()
                if s.startswith(f"{m['shm_addr']:x}-"))
    assert line.split()[:3] == proc.split()[:3] and line.split()[-2:] == proc.split()[-2:]
    assert line.endswith("/SYSV00c0ffee (deleted)")
    with open(tdir(ns_mount) / "mem", "rb") as mem:
        mem.seek(m["shm_addr"] + 2 * PAGE)
        assert mem.read(20) == b"crfs-sysv-shm page 2"
    vma = tdir(ns_mount) / "mm" / "vmas" / line.split()[0] / "data"
    assert vma.read_bytes() == (tdir(ns_mount) / "sysvipc" / f"shm-{m['shm']}").read_bytes()


def test_inet_fd_links_match_proc(ns_mount):
    fds = tdir(ns_mount) / "fd"
    expected = proc_links(truth(f"fd-{PID}.txt"))
    assert {n: os.readlink(fds / n) for n in os.listdir(fds)} == expected


def net_rows(text):
    """{inode: (local, remote, st)} of crfs's net/tcp (its columns by header name)."""
    lines = text.splitlines()
    assert lines[0].split() in (["sl", "local_address", "rem_address", "st", "inode"],
                                ["sl", "local_address", "remote_address", "st", "inode"])
    return {int(row[4]): (row[1], row[2], row[3]) for row in (s.split() for s in lines[1:])}


def proc_net_rows(text):
    """{inode: (local, remote, st)} of /proc/net/tcp (tx:rx and tr:when are one column
    each: the inode is the row's tenth)."""
    return {int(row[9]): (row[1], row[2], row[3])
            for row in (s.split() for s in text.splitlines()[1:])}


LOOPBACK = {"tcp": "0100007F", "udp": "0100007F", "tcp6": "0" * 24 + "01000000"}


@pytest.mark.parametrize("proto", ["tcp", "udp", "tcp6"])
def test_net_files_match_proc_net(ns_mount, proto):
    """Each socket's row as /proc/net showed it: addresses, ports, state, inode, in the
    same columns (the header's first words and the row's first four are /proc's; sl is
    the kernel's hash bucket there, a row number here)."""
    m = markers()
    text = (tdir(ns_mount) / "net" / proto).read_text()
    ours, proc = net_rows(text), proc_net_rows(truth(f"net-{proto}"))
    assert ours and ours == {ino: row for ino, row in proc.items() if ino in ours}
    assert [row[0] for row in ours.values()] == [f"{LOOPBACK[proto]}:{m[proto + '_port']:04X}"]
    head, row = text.splitlines()[:2]
    proc_head, proc_row = truth(f"net-{proto}").splitlines()[:2]
    assert proc_head.startswith(head[:-len("inode")])
    # after sl (the kernel's hash bucket, ours a row number), in the same columns
    assert proc_row.index(":") == row.index(":")
    assert proc_row[proc_row.index(":"):].startswith(row[row.index(":"):-len(str(next(iter(
        ours))))])
    fds = proc_links(truth(f"fd-{PID}.txt"))
    assert fds[str(m[proto])] == f"socket:[{next(iter(ours))}]"


def test_udp6_is_a_header_alone(ns_mount):
    assert (tdir(ns_mount) / "net" / "udp6").read_text().count("\n") == 1


def test_files_dump_tcp_listener_in_net_tcp(ns_mount):
    """The files fixture's TCP listener (0.0.0.0... bound to 127.0.0.1, state 0A) is in
    its net/tcp, with the inode its fd links to; crit says the same port."""
    tcp = net_rows((tdir(ns_mount, "files") / "net" / "tcp").read_text())
    isk = next(e["isk"] for e in crit("files", "files") if "isk" in e)
    assert tcp == {isk["ino"]: (f"0100007F:{isk['src_port']:04X}", "00000000:0000", "0A")}
    assert f"socket:[{isk['ino']}]" in proc_links(
        (DATA / "files.truth" / "fd-144.txt").read_text()).values()


def test_index_codec_keeps_namespaces_cgroup_sysv_and_inet():
    """A cached index (a checkpoint archive's) carries the new parts of the model."""
    from crfs.model import index_codec, registry
    image = registry.open_image(str(DATA / "ns"))
    try:
        _, back = index_codec.decode(index_codec.encode(image, {}), image.source)
        index_codec.check(back, image.source.size)
        task, orig = back.tasks[0], image.tasks[0]
        assert task.namespaces == orig.namespaces and task.cgroup == orig.cgroup
        assert back.namespaces == image.namespaces
        assert [s.read(0, s.size) for s in task.ipc.shms] == \
            [s.read(0, s.size) for s in orig.ipc.shms]
        assert [d.file.inet for d in task.files.fds] == [d.file.inet for d in orig.files.fds]
        vma = next(v for v in task.mm.vmas if v.kind == "shm-ipc")
        assert vma.shm is task.ipc.shms[0].segment      # one segment, shared
    finally:
        image.close()


# ------------------------------------------------------------ corrupt and truncated images

def copy_ns(tmp_path):
    dst = tmp_path / "ns"
    shutil.copytree(DATA / "ns", dst)
    return dst


def load_error(path):
    from crfs.errors import FormatError
    from crfs.model import registry
    with pytest.raises(FormatError) as info:
        registry.open_image(str(path)).close()
    return info.value


def entry_offsets(path, name):
    from crfs.formats import criu
    d = criu.CriuDir.open(str(path))
    try:
        return [(e.offset, e.length) for e in criu.read_entries(d, name)]
    finally:
        d.close()


@pytest.mark.parametrize("name, msg", [("ipcns-shm-9.img", "ipc_shm_entry"),
                                       ("cgroup.img", "cgroup_entry"),
                                       ("utsns-10.img", "utsns_entry"),
                                       ("pagemap-shmem-0.img", "pagemap_entry")])
def test_truncated_new_images_name_file_entry_offset(tmp_path, name, msg):
    """Each new image cut inside its last entry: the error names the file, the entry and
    the offset where the entry starts."""
    dump = copy_ns(tmp_path)
    offsets = entry_offsets(dump, name)
    index = len(offsets) - 1
    offset, length = offsets[index]
    data = (dump / name).read_bytes()
    (dump / name).write_bytes(data[:offset + length - 1])
    err = load_error(dump)
    assert err.record == f"{name}: entry {index} ({msg})", err
    assert err.offset == offset and "runs past the end" in err.message, err
    assert str(err).startswith(f"{dump}: offset {offset:#x}: {name}: entry {index} ({msg}): ")


def test_bad_magic_of_ipcns_shm(tmp_path):
    dump = copy_ns(tmp_path)
    data = bytearray((dump / "ipcns-shm-9.img").read_bytes())
    data[4:8] = (0x55053847).to_bytes(4, "little")          # CORE's
    (dump / "ipcns-shm-9.img").write_bytes(bytes(data))
    err = load_error(dump)
    assert (err.record, err.offset) == ("ipcns-shm-9.img", 4)
    assert err.message == "magic CORE where IPCNS_SHM was expected"


def test_shm_pages_past_the_pages_file(tmp_path):
    """pagemap-shmem-0.img (segment 0: pages-2.img) names more pages than there are."""
    dump = copy_ns(tmp_path)
    (dump / "pages-2.img").write_bytes((dump / "pages-2.img").read_bytes()[:PAGE])
    err = load_error(dump)
    assert err.record == "pagemap-shmem-0.img: entry 2 (pagemap_entry)", err
    assert "run past the end of pages-2.img" in err.message
    assert err.offset == entry_offsets(dump, "pagemap-shmem-0.img")[2][0]


def test_segment_missing_from_its_namespace(tmp_path):
    """The mapped segment's entry removed: the VMA that maps it names its mm entry."""
    from test_criu_convert import encode, entries, write_img
    from crfs.formats import criu
    dump = copy_ns(tmp_path)
    kept = [e for e in entries(dump, "ipcns-shm-9.img") if e["desc"]["id"] != 0]
    write_img(dump / "ipcns-shm-9.img", "IPCNS_SHM", [encode(criu.IPC_SHM, e) for e in kept])
    err = load_error(dump)
    assert err.record == f"mm-{PID}.img: vma {SYSV_VMA}", err
    assert "SysV shmid 0 is not in the dump's IPC namespace (ipc:criu[9])" in err.message
    write_img(dump / "ipcns-shm-9.img", "IPCNS_SHM",
              [encode(criu.IPC_SHM, e) for e in entries(DATA / "ns", "ipcns-shm-9.img")
               + kept])
    err = load_error(dump)
    assert err.record == "ipcns-shm-9.img: entry 2 (ipc_shm_entry)" and "shmid 1 twice" \
        in err.message, err


def test_cg_set_missing_from_cgroup_img(tmp_path):
    from test_criu_convert import edit_core
    dump = copy_ns(tmp_path)
    edit_core(dump, markers()["pid"], lambda core: core["tc"].update(cg_set=7))
    err = load_error(dump)
    assert err.record == f"core-{PID}.img: entry 0 (core_entry)"
    assert err.message == "cg_set 7 is not in cgroup.img"


def test_cg_set_without_controllers_is_an_empty_cgroup_file(tmp_path):
    """Found by fuzz/fuzz_criu.py: a cg_set with no ctls (a repeated field sent zero
    times) failed the load with a KeyError. As /proc/PID/cgroup of a task in no
    hierarchy, the task's cgroup text is empty."""
    from test_criu_convert import encode, entries, write_img
    from crfs.formats import criu
    from crfs.model import registry
    dump = copy_ns(tmp_path)
    cgroup = entries(dump, "cgroup.img")[0]
    for cg_set in cgroup["sets"]:
        cg_set.pop("ctls", None)
    write_img(dump / "cgroup.img", "CGROUP", [encode(criu.CGROUP, cgroup)])
    image = registry.open_image(str(dump))
    try:
        assert image.task(markers()["pid"]).cgroup == ""
    finally:
        image.close()


def test_mutated_ns_dump_gives_an_image_or_a_format_error(tmp_path):
    """Flips, cuts and inserted bytes in the new images: an Image (its new files read)
    or a FormatError naming a record, nothing else."""
    import random
    from crfs.errors import FormatError
    from crfs.model import registry
    from crfs import render_ns
    rng = random.Random(1515)
    dump = copy_ns(tmp_path)
    names = ["ipcns-shm-9.img", "cgroup.img", "utsns-10.img", "pagemap-shmem-0.img",
             "pagemap-shmem-1.img", "files.img", f"ids-{PID}.img", f"core-{PID}.img"]
    originals = {n: (dump / n).read_bytes() for n in names}
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        name = rng.choice(names)
        data = bytearray(originals[name])
        how = rng.randrange(3)
        if how == 0:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(8, len(data))] = rng.randrange(256)
        elif how == 1:
            del data[rng.randrange(8, len(data)):]
        else:
            at = rng.randrange(8, len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        (dump / name).write_bytes(bytes(data))
        try:
            image = registry.open_image(str(dump))
            try:
                for task in image.tasks:
                    render_ns.namespaces(image.namespaces or [])
                    if task.ipc is not None:
                        render_ns.sysvipc_shm(task.ipc)
                        for shm in task.ipc.shms:
                            shm.read(0, min(shm.size, 3 * PAGE))
                    for proto in render_ns.NET_FILES:
                        render_ns.proc_net(render_ns.inet_socks(image, task), proto)
            finally:
                image.close()
            outcomes["ok"] += 1
        except FormatError as exc:
            assert exc.record, exc
            outcomes["error"] += 1
        (dump / name).write_bytes(originals[name])
    assert outcomes["error"] > 100 and outcomes["ok"] > 10, outcomes


# ------------------------------------------------------------------------- crfs convert

def test_convert_refuses_sysv_shm_naming_the_images(tmp_path):
    """crfs.ko restores no SysV shm: the mapping is refused naming its mm entry and the
    segment's ipcns-shm entry; without the mapping, the namespace's segments still are."""
    from test_criu_convert import encode, entries, write_img
    from crfs import convert
    from crfs.errors import Unsupported
    from crfs.formats import criu
    out = tmp_path / "ns.ckpt"
    with pytest.raises(Unsupported) as info:
        convert.convert(str(DATA / "ns"), str(out), "ckpt")
    assert str(info.value) == (
        f"mm-{PID}.img: vma {SYSV_VMA}: SysV shm segment 0 (ipcns-shm-9.img: entry 0 (ipc_shm_entry)), "
        f"mapped at {markers()['shm_addr']:#x}-{markers()['shm_addr'] + 3 * PAGE:#x}: crfs.ko "
        f"does not restore SysV shared memory")
    dump = copy_ns(tmp_path)
    mm = entries(dump, f"mm-{PID}.img")[0]
    mm["vmas"] = [v for v in mm["vmas"] if not v["status"] & (1 << 10)]
    write_img(dump / f"mm-{PID}.img", "MM", [encode(criu.MM, mm)])
    with pytest.raises(Unsupported) as info:
        convert.convert(str(dump), str(out), "ckpt")
    assert str(info.value) == (
        "ipcns-shm-9.img: entry 0 (ipc_shm_entry): SysV shm segment 0 (key 0xc0ffee, 12288 "
        f"bytes) of task {PID}'s IPC namespace: crfs.ko does not restore SysV shared memory")
    assert not out.exists() and not list(tmp_path.glob(".crfs-convert-*"))
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "crfs", "convert", str(DATA / "ns"), "-o",
                          str(out)], capture_output=True, text=True)
    assert run.returncode != 0 and not out.exists()
    assert f"mm-{PID}.img: vma {SYSV_VMA}: SysV shm segment 0 (ipcns-shm-9.img: entry 0" \
        in run.stderr


def test_convert_keeps_inet_sockets_opaque(tmp_path):
    """Inet sockets are what crfs's own checkpoints make of them: opaque fds, each named by
    its link (a restart takes one handed in with -i, or refuses: docs/kmod.md); convert
    says so, naming the files.img entry."""
    from crfs import convert
    from crfs.model import registry
    out = tmp_path / "files.ckpt"
    notes = []
    convert.convert(str(DATA / "files"), str(out), "ckpt", notes=notes)
    isk_entry = next(i for i, e in enumerate(crit("files", "files")) if "isk" in e)
    isk = crit("files", "files")[isk_entry]["isk"]
    assert notes == [f"files.img: entry {isk_entry} (file_entry): TCP socket:[{isk['ino']}] "
                     f"(port {isk['src_port']}), fd 8 of 144: written opaque; crfs.ko "
                     f"restores it only handed in (crfs-restart -i 8=...)"]
    image = registry.open_image(str(out))
    try:
        socks = [d.file for d in image.tasks[0].files.fds if d.file.kind == "socket"]
        assert f"socket:[{isk['ino']}]" in [f.link() for f in socks]
    finally:
        image.close()


def test_new_images_match_crit_show():
    """cgroup.img, utsns and ipcns-shm as `crit show` decoded them. crit 3.17 reads an
    ipc_shm_entry as followed by the segment's bytes even with in_pagemaps (the bytes
    are in pagemap-shmem-SHMID.img): it takes the next entry for them ("extra")."""
    import base64
    from test_criu_convert import entries
    assert entries(DATA / "ns", "cgroup.img") == crit("ns", "cgroup")
    assert entries(DATA / "ns", "utsns-10.img") == crit("ns", "utsns-10")
    ours = entries(DATA / "ns", "ipcns-shm-9.img")
    theirs = crit("ns", "ipcns-shm-9")
    extra = base64.b64decode(theirs[0].pop("extra"))
    assert ours[0] == theirs[0] and len(theirs) == 1 and len(ours) == 2
    second = entry_offsets(DATA / "ns", "ipcns-shm-9.img")[1][0]
    assert extra == (DATA / "ns" / "ipcns-shm-9.img").read_bytes()[second:]


def test_gdb_reads_the_sysv_segment_from_the_core(ns_mount):
    """tasks/<pid>/core holds the segment's mapping: gdb reads its pages at their address."""
    import subprocess
    addr = markers()["shm_addr"]
    run = subprocess.run(["gdb", "-q", "-batch", "-ex", f"core-file {tdir(ns_mount) / 'core'}",
                          "-ex", f"x/s {addr:#x}", "-ex", f"x/s {addr + 2 * PAGE:#x}",
                          "-ex", f"x/4xb {addr + PAGE:#x}"],
                         capture_output=True, text=True, timeout=120)
    assert f'{addr:#x}:\t"crfs-sysv-shm page 0"' in run.stdout, run.stdout + run.stderr
    assert f'{addr + 2 * PAGE:#x}:\t"crfs-sysv-shm page 2"' in run.stdout
    assert f"{addr + PAGE:#x}:\t0x00\t0x00\t0x00\t0x00" in run.stdout


def test_sysv_mapping_without_its_namespace(tmp_path):
    """A dump whose ipcns-shm image is gone (criu never writes one so: it refuses to dump
    a SysV mapping of its own IPC namespace): the mapping is named by its shmid, reads as
    zeros, and convert still refuses it."""
    from crfs import convert, render
    from crfs.errors import Unsupported
    from crfs.model import registry
    dump = copy_ns(tmp_path)
    (dump / "ipcns-shm-9.img").unlink()
    image = registry.open_image(str(dump))
    try:
        task = image.tasks[0]
        vma = next(v for v in task.mm.vmas if v.kind == "shm-ipc")
        assert render.vma_name(vma, task.mm) == "/SYSV (shmid 0)"
        assert task.ipc is None and task.mm.read(vma.start, 16) == bytes(16)
    finally:
        image.close()
    with pytest.raises(Unsupported) as info:
        convert.convert(str(dump), str(tmp_path / "x.ckpt"), "ckpt")
    assert f"mm-{PID}.img: vma {SYSV_VMA}: SysV shm segment 0 (its IPC namespace not in " \
        "the dump)" in str(info.value)
