"""CRIU image directories (issue #15): real `criu dump` output (tests/data/criu, made by its
make-fixtures in the kmod qemu guest) read through a real mount and the CLI, checked
against what was true of the processes at dump time (/proc, ptrace, their own markers) and
against `crit show` of the same images; corrupt images give FormatErrors naming the file,
the entry and the offset, and never anything else."""

import json
import os
import random
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from crfs.errors import FormatError
from crfs.formats import criu
from crfs.fs.store import criu_mode, image_stat
from crfs.model import registry
from mountfs import CRFS, Mount, errors_in_log
from test_core import gdb, gdb_registers, readelf_clean

DATA = Path(__file__).parent / "data" / "criu"
SCENARIOS = ("threads", "fork")
PAGE = 4096
ERESTART = range((1 << 64) - 516, (1 << 64) - 511)    # -ERESTARTSYS .. -ERESTART_RESTARTBLOCK


# --------------------------------------------------------------------------- the truth

def truth(name):
    return DATA / f"{name}.truth"


def markers(name):
    """{pid: {"global", "heap", "heap_len", "seed"}}, {tid: fs_base} from out.txt."""
    procs, threads = {}, {}
    for line in (truth(name) / "out.txt").read_text().splitlines():
        words = line.split()
        if words[0] == "shared":
            continue
        if words[0] == "proc":
            fields = dict(w.split("=") for w in words[2:])
            procs[int(words[1])] = {k: int(v, 0) for k, v in fields.items()}
        elif words[0] == "thread":
            threads[int(words[2])] = (int(words[1]), int(words[3].split("=")[1], 16))
    return procs, threads


def shared_marker(name):
    """(pid, address, length) of the fork scenario's MAP_SHARED|MAP_ANONYMOUS pages."""
    for line in (truth(name) / "out.txt").read_text().splitlines():
        if line.startswith("shared "):
            words = line.split()
            return int(words[1]), int(words[2].split("=")[1], 16), int(words[3].split("=")[1])
    return None


def crit(name, image):
    return json.loads((truth(name) / "crit" / f"{image}.json").read_text())["entries"]


def ptrace_regs(name):
    """{tid: registers} from regs_probe, for every pid of the scenario."""
    out = {}
    for path in truth(name).glob("regs-*.jsonl"):
        for line in path.read_text().splitlines():
            regs = json.loads(line)
            out[regs.pop("tid")] = regs
    return out


def regs_file(path):
    return {k: int(v, 16) for k, v in (line.split() for line in path.read_text().splitlines())}


def all_tids(name):
    return sorted(int(p.name.split("-")[1]) for p in truth(name).glob("comm-*"))


# The pids the fixtures were dumped with: the threads program and its worker thread, the
# fork program's parent and child.
PID, WORKER = all_tids("threads")
PARENT, CHILD = all_tids("fork")


# --------------------------------------------------------------------------- the mount

@pytest.fixture(scope="module")
def criu_mount(tmp_path_factory):
    root = tmp_path_factory.mktemp("criu")
    mount = Mount(root)
    for name in SCENARIOS:
        shutil.copytree(DATA / name, mount.store / name)
    (mount.store / "not-a-dump").mkdir()                 # a directory without inventory.img
    os.symlink(mount.store / "threads", mount.store / "link-to-dump")
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


@pytest.fixture(scope="module")
def exe_at_dumped_path():
    """gdb finds the program's first page (and so where the PIE is loaded) only in the file
    the core's NT_FILE names: the dumped path, /tmp/crfs-criu/criu_prog."""
    path = Path("/tmp/crfs-criu/criu_prog")
    made = not path.exists()
    path.parent.mkdir(exist_ok=True)
    shutil.copy(DATA / "bin" / "criu_prog", path)
    yield path
    if made:
        shutil.rmtree(path.parent, ignore_errors=True)


def tdir(mount, name, tid):
    return mount / name / "tasks" / str(tid)


def test_store_lists_dump_directories_only(criu_mount):
    names = sorted(os.listdir(criu_mount.path))
    assert "threads" in names and "fork" in names
    assert "not-a-dump" not in names and "link-to-dump" not in names
    assert not os.path.exists(criu_mount / "link-to-dump")
    assert (criu_mount / "threads" / "format").read_text() == "criu v1.1 x86_64\n"
    verify = (criu_mount / "fork" / "verify").read_text()
    assert verify.endswith("result: sound\n"), verify


@pytest.mark.parametrize("name", SCENARIOS)
def test_tasks_and_comms_match_proc(criu_mount, name):
    tids = all_tids(name)
    assert sorted(int(t) for t in os.listdir(criu_mount / name / "tasks")) == tids
    for tid in tids:
        assert (tdir(criu_mount, name, tid) / "comm").read_text() == \
            (truth(name) / f"comm-{tid}").read_text()


@pytest.mark.parametrize("name", SCENARIOS)
def test_status_matches_proc(criu_mount, name):
    procs, _ = markers(name)
    for pid in procs:
        real = dict(line.split(":", 1) for line in
                    (truth(name) / f"status-{pid}").read_text().splitlines())
        ours = dict(line.split(":", 1) for line in
                    (tdir(criu_mount, name, pid) / "status").read_text().splitlines())
        for key in ("Name", "Umask", "Tgid", "Pid", "Uid", "Gid", "SigBlk", "CapPrm",
                    "CapEff", "CapBnd"):
            assert ours[key].strip() == real[key].strip(), key
        if pid != min(procs):       # criu keeps the parent inside the tree only
            assert ours["PPid"].strip() == real["PPid"].strip()


def normalized_maps(text):
    """/proc maps lines with the dev and inode columns (not in CRIU images) blanked."""
    out = []
    for line in text.splitlines():
        f = line.split(None, 5)
        out.append((f[0], f[1], f[2], f[5] if len(f) > 5 else ""))
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_maps_match_proc(criu_mount, name):
    procs, _ = markers(name)
    for pid in procs:
        ours = (tdir(criu_mount, name, pid) / "mm" / "maps").read_text()
        assert normalized_maps(ours) == normalized_maps(
            (truth(name) / f"maps-{pid}").read_text())


@pytest.mark.parametrize("name", SCENARIOS)
def test_regs_match_ptrace_and_crit(criu_mount, name):
    real = ptrace_regs(name)
    assert sorted(real) == all_tids(name)
    for tid, regs in real.items():
        ours = regs_file(tdir(criu_mount, name, tid) / "regs")
        expected = dict(regs)
        if regs["rax"] in ERESTART:         # criu saves a syscall ready to restart
            expected["rax"], expected["rip"] = regs["orig_rax"], regs["rip"] - 2
        assert ours == expected, tid
        gp = crit(name, f"core-{tid}")[0]["thread_info"]["gpregs"]
        names = {"bp": "rbp", "bx": "rbx", "ax": "rax", "cx": "rcx", "dx": "rdx",
                 "si": "rsi", "di": "rdi", "orig_ax": "orig_rax", "ip": "rip",
                 "flags": "eflags", "sp": "rsp"}
        assert {names.get(k, k): int(v, 16) for k, v in gp.items() if k != "mode"} == ours


@pytest.mark.parametrize("name", SCENARIOS)
def test_fs_base_is_each_threads_own(criu_mount, name):
    _, threads = markers(name)
    for tid, (_, fs_base) in threads.items():
        assert regs_file(tdir(criu_mount, name, tid) / "regs")["fs_base"] == fs_base


@pytest.mark.parametrize("name", SCENARIOS)
def test_memory_holds_the_programs_patterns(criu_mount, name):
    procs, _ = markers(name)
    for pid, m in procs.items():
        with open(tdir(criu_mount, name, pid) / "mem", "rb") as mem:
            mem.seek(m["global"])
            words = struct.unpack("<1024Q", mem.read(8192))
            assert words == tuple(m["seed"] << 32 | i for i in range(1024))
            mem.seek(m["heap"])
            heap = struct.unpack(f"<{m['heap_len'] // 8}Q", mem.read(m["heap_len"]))
            assert heap == tuple(0xC0DE000000000000 | m["seed"] << 32 | i
                                 for i in range(m["heap_len"] // 8))
        heap_vma = next(v for v in os.listdir(tdir(criu_mount, name, pid) / "mm" / "vmas")
                        if int(v.split("-")[0], 16) <= m["heap"] < int(v.split("-")[1], 16))
        data = (tdir(criu_mount, name, pid) / "mm" / "vmas" / heap_vma / "data").read_bytes()
        at = m["heap"] - int(heap_vma.split("-")[0], 16)
        assert data[at:at + 16] == struct.pack("<QQ", 0xC0DE000000000000 | m["seed"] << 32,
                                               0xC0DE000000000000 | m["seed"] << 32 | 1)


@pytest.mark.parametrize("name", SCENARIOS)
def test_pages_match_crit_pagemap(criu_mount, name):
    """pages/ lists exactly crit's PE_PRESENT pages (the process's, and those of the shared
    memory it maps), each with its bytes of the pages-N.img its pagemap names."""
    procs, _ = markers(name)

    def present(pagemap, base):
        head, *entries = crit(name, pagemap)
        raw = (DATA / name / f"pages-{head['pages_id']}.img").read_bytes()
        found, offset = {}, 0
        for e in entries:
            if "PE_PRESENT" not in e["flags"]:
                continue
            for i in range(e["nr_pages"]):
                found[f"{base + int(e['vaddr'], 16) + i * PAGE:08x}"] = raw[offset:offset + PAGE]
                offset += PAGE
        assert offset == len(raw)
        return found

    for pid in procs:
        expected = present(f"pagemap-{pid}", 0)
        if shared_marker(name):
            shmem = next((truth(name) / "crit").glob("pagemap-shmem-*.json")).stem
            expected.update(present(shmem, shared_marker(name)[1]))
        pages = tdir(criu_mount, name, pid) / "pages"
        assert sorted(os.listdir(pages)) == sorted(expected)
        for addr, data in expected.items():
            assert (pages / addr).read_bytes() == data, addr


@pytest.mark.parametrize("name", SCENARIOS)
def test_model_matches_crit(name):
    image = registry.open_image(DATA / name)
    try:
        assert [(t.pid, t.tgid, t.comm) for t in image.tasks] == [
            (tid, p["pid"], crit(name, f"core-{tid}")[0]["thread_core"]["comm"])
            for p in crit(name, "pstree") for tid in p["threads"]]
        for proc in crit(name, "pstree"):
            task = image.task(proc["pid"])
            assert (task.ppid, task.pgid, task.sid) == (proc["ppid"], proc["pgid"], proc["sid"])
            mm_entry = crit(name, f"mm-{proc['pid']}")[0]
            assert {k: v for k, v in task.mm.fields.items()} == {
                k[3:]: int(v, 16) for k, v in mm_entry.items() if k.startswith("mm_")
                and k != "mm_saved_auxv"}
            assert [(v.start, v.end, v.pgoff * PAGE) for v in task.mm.vmas] == [
                (int(v["start"], 16), int(v["end"], 16), v["pgoff"]) for v in mm_entry["vmas"]]
            auxv = [x for pair in task.mm.auxv for x in pair]
            assert mm_entry["mm_saved_auxv"][:len(auxv)] == auxv
            fs_entry = crit(name, f"fs-{proc['pid']}")[0]
            assert task.fs.umask == fs_entry["umask"]
            core = crit(name, f"core-{proc['pid']}")[0]
            sa = core["tc"]["sigactions"]
            handlers = [a for i, a in enumerate(task.signals.handlers.actions, 1)
                        if i not in (9, 19)]
            assert [(a.handler, a.flags) for a in handlers] == [
                (int(s["sigaction"], 16), int(s["flags"], 16)) for s in sa]
            fp = core["thread_info"]["fpregs"]
            fx = task.fpu
            assert struct.unpack_from("<HHI", fx, 0)[0] == fp["cwd"]
            assert struct.unpack_from("<II", fx, 24) == (fp["mxcsr"], fp["mxcsr_mask"])
            assert list(struct.unpack_from("<64I", fx, 160)) == fp["xmm_space"]
            assert list(struct.unpack_from("<64I", fx, 576)) == fp["xsave"]["ymmh_space"]
    finally:
        image.close()


def test_shared_memory_is_shared(criu_mount):
    """The fork program's MAP_SHARED|MAP_ANONYMOUS pages (criu: a memfd "/dev/zero" with
    its own pagemap-shmem-*.img) read the same from both processes: the parent's pages 0
    and 2, the child's page 1 (written after the fork), page 3 never touched (zeros)."""
    _, addr, length = shared_marker("fork")
    expected = b"".join(
        struct.pack("<512Q", *(0x5AED000000000000 | seed << 32 | i for i in range(512)))
        for seed in (2, 3, 2)) + bytes(PAGE)
    for pid in (PARENT, CHILD):
        with open(tdir(criu_mount, "fork", pid) / "mem", "rb") as mem:
            mem.seek(addr)
            assert mem.read(length) == expected, pid
        maps = (tdir(criu_mount, "fork", pid) / "mm" / "maps").read_text()
        assert f"{addr:x}-{addr + length:x} rw-s" in maps and "/dev/zero (deleted)" in maps


def test_fds_and_cwd_are_named(criu_mount):
    image = registry.open_image(DATA / "threads")
    try:
        task = image.task(PID)
        assert task.fs.cwd == "/tmp/crfs-criu/threads" and task.fs.root == "/"
        assert task.native.fds == ("0 /dev/null\n1 /tmp/crfs-criu/threads/out.txt\n"
                                   "2 /tmp/crfs-criu/threads/out.txt\n")
    finally:
        image.close()
    assert (tdir(criu_mount, "threads", PID) / "cwd").read_text() == "/tmp/crfs-criu/threads\n"


def test_cli_info_records_verify():
    info = subprocess.run(CRFS + ["info", str(DATA / "fork")], capture_output=True,
                          text=True, check=True).stdout
    assert "format: criu v1.1 x86_64" in info
    assert f"pid {CHILD} tgid {CHILD} ppid {PARENT} comm 'fork-child'" in info
    records = subprocess.run(CRFS + ["records", str(DATA / "threads")], capture_output=True,
                             text=True, check=True).stdout
    assert f"pagemap-{PID}.img: pagemap_entry" in records and "pages-1.img" in records
    verify = subprocess.run(CRFS + ["verify", str(DATA / "threads")], capture_output=True,
                            text=True)
    assert verify.returncode == 0, verify.stdout


# --------------------------------------------------------------------------- gdb

@pytest.mark.parametrize("name", SCENARIOS)
def test_gdb_on_every_process(criu_mount, exe_at_dumped_path, name):
    procs, threads = markers(name)
    exe = DATA / "bin" / "criu_prog"
    real = ptrace_regs(name)
    for pid, m in procs.items():
        core = tdir(criu_mount, name, pid) / "core"
        readelf_clean(core)
        tids = [t for t, (p, _) in threads.items() if p == pid]
        commands = ["thread apply all bt", "p g_message", "p/x g_words[7]", "p/x g_heap[5]"]
        for n in range(1, len(tids) + 1):
            commands += [f"thread {n}", "info registers rip rsp rbx r12 fs_base"]
        out = gdb(*commands, args=(exe, core))
        assert '"crfs criu fixture: global message"' in out, out
        assert re.search(rf"= {hex(m['seed'] << 32 | 7)}$", out, re.M), out
        assert re.search(rf"= {hex(0xC0DE000000000000 | m['seed'] << 32 | 5)}$", out, re.M)
        frames = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\w+) \(", out, re.M)
        expected = {"threads": ["run_threads", "main", "worker", "start_thread"],
                    "fork": ["run_fork", "main"]}[name]
        assert set(expected) <= set(frames), out
        blocks = out.split("[Switching to thread")[1:]
        assert len(blocks) == len(tids), out
        shown = {}
        for block in blocks:
            lwp = int(re.search(r"\(LWP (\d+)\)", block).group(1))
            shown[lwp] = gdb_registers(block)
        for tid in tids:
            regs = real[tid]
            rip = regs["rip"] - 2 if regs["rax"] in ERESTART else regs["rip"]
            assert shown[tid] == {"rip": rip, "rsp": regs["rsp"], "rbx": regs["rbx"],
                                  "r12": regs["r12"], "fs_base": regs["fs_base"]}, out


# --------------------------------------------------------------------------- bad images

def copy_dump(tmp_path, name="threads"):
    dst = tmp_path / name
    shutil.copytree(DATA / name, dst)
    return dst


def load_error(path):
    with pytest.raises(FormatError) as info:
        registry.open_image(path).close()
    return info.value


def test_truncated_core_names_file_entry_offset(tmp_path):
    dump = copy_dump(tmp_path)
    core = dump / f"core-{WORKER}.img"
    core.write_bytes(core.read_bytes()[:300])
    err = load_error(dump)
    assert err.record == f"core-{WORKER}.img: entry 0 (core_entry)"
    assert err.offset == 8 and "runs past the end" in err.message
    assert str(err).startswith(f"{dump}: offset 0x8: core-{WORKER}.img: entry 0 (core_entry): ")


def test_bad_magic_names_file_and_offset(tmp_path):
    dump = copy_dump(tmp_path)
    mm = dump / f"mm-{PID}.img"
    data = bytearray(mm.read_bytes())
    data[4:8] = struct.pack("<I", criu.MAGICS["CORE"])
    mm.write_bytes(bytes(data))
    err = load_error(dump)
    assert (err.record, err.offset) == (f"mm-{PID}.img", 4)
    assert err.message == "magic CORE where MM was expected"
    data[0:4] = b"\0\0\0\0"
    mm.write_bytes(bytes(data))
    assert "neither IMG_COMMON_MAGIC" in load_error(dump).message


def test_unknown_img_version(tmp_path):
    dump = copy_dump(tmp_path)
    inv = dump / "inventory.img"
    data = bytearray(inv.read_bytes())
    assert data[8:10] == b"\x08\x02"       # field 1 (img_version) = 2
    data[9] = 7
    inv.write_bytes(bytes(data))
    err = load_error(dump)
    assert err.record == "inventory.img: entry 0 (inventory_entry)"
    assert "img_version 7" in err.message


def test_pagemap_past_pages_file(tmp_path):
    dump = copy_dump(tmp_path)
    pages = dump / "pages-1.img"
    pages.write_bytes(pages.read_bytes()[:10 * PAGE])
    err = load_error(dump)
    assert err.record.startswith(f"pagemap-{PID}.img: entry ") and "run past the end" in err.message
    assert err.offset is not None


def test_missing_required_field(tmp_path):
    dump = copy_dump(tmp_path)
    fs = dump / f"fs-{PID}.img"     # one fs_entry {cwd_id, root_id, umask}: drop root_id
    data = fs.read_bytes()
    assert data[8:12] == b"\x06\x00\x00\x00" and data[14] == 0x10
    fs.write_bytes(data[:8] + b"\x04\x00\x00\x00" + data[12:14] + data[16:])
    err = load_error(dump)
    assert err.record == f"fs-{PID}.img: entry 0 (fs_entry)"
    assert "missing required root_id" in err.message


def test_inventory_file_alone_is_refused(tmp_path):
    lone = tmp_path / "inventory.img"
    shutil.copy(DATA / "threads" / "inventory.img", lone)
    assert "dump directory" in load_error(lone).message


def test_symlinked_member_is_not_followed(tmp_path):
    dump = copy_dump(tmp_path)
    (dump / f"fs-{PID}.img").unlink()
    os.symlink("/etc/passwd", dump / f"fs-{PID}.img")
    image = registry.open_image(dump)     # a link is no member: the fs image is absent
    try:
        assert image.task(PID).fs is None
    finally:
        image.close()
    with criu.CriuDir.open(dump) as d:
        with pytest.raises(FormatError):
            d.member(f"fs-{PID}.img")


def test_mutations_raise_format_error_only(tmp_path):
    """Byte flips, truncations and inserted bytes in every metadata file: loading gives an
    Image or a FormatError, never another exception."""
    rng = random.Random(15)
    dump = copy_dump(tmp_path, "fork")
    files = sorted(p.name for p in dump.glob("*.img") if not p.name.startswith("pages-"))
    originals = {n: (dump / n).read_bytes() for n in files}
    outcomes = {"ok": 0, "error": 0}
    for i in range(400):
        name = rng.choice(files)
        data = bytearray(originals[name])
        how = rng.randrange(4)
        if how == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 1:
            del data[rng.randrange(len(data)):]
        elif how == 2:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            at = rng.randrange(8, len(data)) if len(data) > 8 else 0
            data[at] = 0xFF
        (dump / name).write_bytes(bytes(data))
        try:
            image = registry.open_image(dump)
            for task in image.tasks:
                if task.mm is not None:
                    for vma in task.mm.vmas[:3]:
                        task.mm.read(vma.start, 64)
            image.close()
            outcomes["ok"] += 1
        except FormatError as exc:
            assert exc.record, exc
            outcomes["error"] += 1
        (dump / name).write_bytes(originals[name])
    assert outcomes["error"] > 100, outcomes


def test_decoder_wire_types():
    msg = criu.Message("m", (criu.REQ, criu.U32, "a", 1), (criu.REP, criu.U64, "b", 2),
                       (criu.OPT, criu.S64, "c", 3), (criu.OPT, criu.I32, "d", 4))
    # a=150, b packed [1, 300], c=-2 (zigzag 3), d=-1 (10-byte varint), unknown field 9
    data = bytes([0x08, 0x96, 0x01, 0x12, 0x03, 0x01, 0xAC, 0x02, 0x18, 0x03,
                  0x20] + [0xFF] * 9 + [0x01] + [0x4D, 1, 2, 3, 4])
    assert criu.decode(data, msg) == {"a": 150, "b": [1, 300], "c": -2, "d": -1}
    for bad in (b"\x08", b"\x08\x96", b"\x12\x05\x01", b"\x0b", b"\x10\x01"):
        with pytest.raises(criu.WireError):
            criu.decode(bad, msg)



def test_decoder_refuses_a_varint_for_a_string_or_bytes():
    """Found by fuzz/fuzz_criu.py: a one-byte edit gave reg_file_entry's `name` (a string,
    field 6) wire type 0; the decoder took the varint for the name, and the core's NT_FILE
    note failed on an int. A varint for a string or bytes field is a WireError."""
    msg = criu.Message("m", (criu.OPT, criu.STR, "s", 1), (criu.OPT, criu.BYTES, "b", 2),
                       (criu.REP, criu.STR, "r", 3))
    assert criu.decode(b"\x0a\x02hi\x12\x01\x00\x1a\x01x", msg) == \
        {"s": "hi", "b": b"\x00", "r": ["x"]}
    for bad in (b"\x08\x05", b"\x10\x85\x01", b"\x18\x01"):
        with pytest.raises(criu.WireError, match="wire type 0"):
            criu.decode(bad, msg)


def test_varint_writer_is_what_the_decoder_reads():
    assert criu.varint(150) == bytes([0x96, 0x01])     # the protobuf documentation's example
    for n in (0, 1, 127, 128, 300, 1 << 32, (1 << 64) - 1):
        data = criu.varint(n)
        assert criu._varint(data, 0, len(data)) == (n, len(data))


# --------------------------------------------------------------------------- store rules

def test_criu_mode_takes_the_files_bits(tmp_path):
    dump = copy_dump(tmp_path)
    os.chmod(dump, 0o755)
    for p in dump.iterdir():
        os.chmod(p, 0o644)
    st = os.lstat(dump)
    assert stat.S_IMODE(criu_mode(str(dump), st)) == 0o444
    os.chmod(dump / "pages-1.img", 0o640)
    assert stat.S_IMODE(criu_mode(str(dump), st)) == 0o440
    os.chmod(dump, 0o750)                               # others may not search it
    st = os.lstat(dump)
    assert stat.S_IMODE(criu_mode(str(dump), st)) == 0o440
    os.chmod(dump / "pages-1.img", 0o644)
    os.chown(dump / f"core-{PID}.img", 65534, -1)       # another owner: its "other" bits
    os.chmod(dump / f"core-{PID}.img", 0o640)
    assert stat.S_IMODE(criu_mode(str(dump), st)) == 0o040
    assert image_stat(str(dump), st) == (st, None)
    (dump / "inventory.img").unlink()
    assert image_stat(str(dump), st) is None


# --------------------------------------------------------------------------- who may read

@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_a_dump_with_a_private_file_is_private_through_the_mount():
    """Readable directory, one 0600 file in it (criu's pages): user nobody reads nothing of
    the dump through an allow_other mount; chmod 0644 of that file opens it at once."""
    import tempfile
    from test_mount_security import as_user, denied, read_as
    with tempfile.TemporaryDirectory(prefix="crfs-criu-sec-") as tmp:
        world = Path(tmp)
        os.chmod(world, 0o755)
        mount = Mount(world)
        os.chmod(mount.store, 0o755)
        dump = mount.store / "threads"
        shutil.copytree(DATA / "threads", dump)
        os.chmod(dump, 0o755)
        for p in dump.iterdir():
            os.chmod(p, 0o644)
        os.chmod(dump / "pages-1.img", 0o600)
        mount.mount("-o", "allow_other")
        try:
            task = mount / "threads" / "tasks" / str(PID)
            assert (task / "comm").read_text() == "criu_prog\n"     # root may
            assert stat.S_IMODE(os.stat(mount / "threads").st_mode) == 0o500
            for path in (task / "mem", task / "comm", task / "regs", mount / "threads" / "format"):
                assert denied(read_as(path)), path
            assert denied(as_user("ls", task))
            os.chmod(dump / "pages-1.img", 0o644)
            assert read_as(task / "mem").returncode == 0
            assert as_user("cat", task / "regs").returncode == 0
        finally:
            mount.unmount()
        assert not errors_in_log(mount.log_text()), mount.log_text()


# --------------------------------------------------------------------------- tar archives

def make_tar(path, name="fork", prefix="checkpoint/", fmt=None, extra=()):
    """An uncompressed tar laid out as podman's checkpoint export: config.dump, then the
    dump's files under `prefix`."""
    import tarfile
    with tarfile.open(path, "w", format=fmt or tarfile.PAX_FORMAT) as tar:
        config = path.parent / "config.dump"
        config.write_text("{}\n")
        tar.add(config, "config.dump")
        for p in sorted((DATA / name).iterdir()):
            tar.add(p, prefix + p.name)
        for arcname, source in extra:
            tar.add(source, arcname)
    return path


@pytest.mark.parametrize("fmt", ["pax", "gnu", "ustar"])
def test_tar_export_reads_as_the_directory(tmp_path, fmt):
    import tarfile
    formats = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT,
               "ustar": tarfile.USTAR_FORMAT}
    prefix = "checkpoint/" if fmt == "ustar" else "a" * 90 + "/" + "b" * 40 + "/checkpoint/"
    tar = make_tar(tmp_path / "export.tar", prefix=prefix, fmt=formats[fmt])
    from_tar, from_dir = registry.open_image(tar), registry.open_image(DATA / "fork")
    try:
        assert from_tar.description == from_dir.description
        for a, b in zip(from_tar.tasks, from_dir.tasks):
            assert (a.pid, a.comm, a.regs, a.fpu) == (b.pid, b.comm, b.regs, b.fpu)
            assert [(v.start, v.end, len(v.pages)) for v in a.mm.vmas] == \
                [(v.start, v.end, len(v.pages)) for v in b.mm.vmas]
            for vma in a.mm.vmas:
                assert a.mm.read(vma.start, vma.size) == b.mm.read(vma.start, vma.size)
    finally:
        from_tar.close()
        from_dir.close()


def test_tar_in_the_store_is_served_in_place(tmp_path):
    mount = Mount(tmp_path)
    make_tar(mount.store / "fork-export.tar")
    mount.mount()
    try:
        procs, _ = markers("fork")
        for pid, m in procs.items():
            with open(mount / "fork-export.tar" / "tasks" / str(pid) / "mem", "rb") as mem:
                mem.seek(m["heap"])
                assert struct.unpack("<Q", mem.read(8))[0] == \
                    0xC0DE000000000000 | m["seed"] << 32
        assert (mount / "fork-export.tar" / "format").read_text() == "criu v1.1 x86_64\n"
    finally:
        mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def test_bad_tar_archives(tmp_path):
    tar = make_tar(tmp_path / "export.tar", fmt=__import__("tarfile").USTAR_FORMAT)
    data = bytearray(tar.read_bytes())
    bad = tmp_path / "bad.tar"
    second = 512 + 512          # config.dump's header, its data block, then checkpoint/...
    corrupt = bytearray(data)
    corrupt[second + 10] ^= 0xFF
    bad.write_bytes(bytes(corrupt))
    err = load_error(bad)
    assert (err.record, err.offset, err.message) == ("tar header", second,
                                                     "tar header checksum mismatch")
    bad.write_bytes(bytes(data[:len(data) // 2]))
    err = load_error(bad)
    assert err.record == "tar header" and "past the end" in err.message
    two = make_tar(tmp_path / "two.tar", extra=[("other/inventory.img",
                                                 DATA / "threads" / "inventory.img")])
    assert "2 CRIU dumps in one archive" in load_error(two).message


# --------------------------------------------------------------------------- convert

@pytest.mark.parametrize("name,fmt", [("threads", "ckpt"), ("fork", "ckpt")])
def test_convert_keeps_tasks_registers_and_memory(tmp_path, name, fmt):
    out = tmp_path / f"{name}.{fmt}"
    run = subprocess.run(CRFS + ["convert", str(DATA / name), "-o", str(out), "--format", fmt],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    assert subprocess.run(CRFS + ["verify", str(out)], capture_output=True).returncode == 0
    src, dst = registry.open_image(DATA / name), registry.open_image(out)
    try:
        assert [(t.pid, t.tgid, t.ppid, t.comm, t.regs) for t in dst.tasks] == \
            [(t.pid, t.tgid, t.ppid, t.comm, t.regs) for t in src.tasks]
        for a, b in zip(src.tasks, dst.tasks):
            kept = [v for v in a.mm.vmas if v.kind not in ("vvar", "vdso")]
            for vma in kept:
                assert b.mm.read(vma.start, vma.size) == a.mm.read(vma.start, vma.size), \
                    hex(vma.start)
            assert b.fpu[:512] == a.fpu[:512]
    finally:
        src.close()
        dst.close()


def test_convert_reports_its_progress(tmp_path):
    """convert(progress=) is told the bytes written, ending with the whole file (crfs
    convert shows it as a percentage on a terminal)."""
    from crfs.convert import convert
    out = tmp_path / "threads.ckpt"
    calls = []
    convert(str(DATA / "threads"), str(out), "ckpt", lambda done, total: calls.append(
        (done, total)))
    size = out.stat().st_size
    assert calls and calls[-1][0] == size and calls[-1][1] >= size


def test_convert_refuses_what_the_format_cannot_hold(tmp_path):
    run = subprocess.run(CRFS + ["convert", str(DATA / "threads"), "-o",
                                 str(tmp_path / "t.cr"), "--format", "cr"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "holds exactly one task" in run.stderr
    run = subprocess.run(CRFS + ["convert", str(DATA / "fork"), "-o",
                                 str(tmp_path / "f.cpt"), "--format", "cpt"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "cannot hold the shared mapping" in run.stderr
    assert os.listdir(tmp_path) == []      # no partial file left


def test_mutated_dumps_walk_like_the_fuzzer(tmp_path):
    """The fuzz harness's walk of the mount's tree (fuzz/fuzz_formats.py: every directory,
    every file read as cat would, mem at VMA edges, core, verify, records) over mutated
    dumps: FormatError is the only complaint."""
    import importlib.util

    from crfs.fs.image_tree import ImageDir
    spec = importlib.util.spec_from_file_location(
        "fuzz_formats", Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_formats.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    rng = random.Random(0x15)
    dump = copy_dump(tmp_path, "fork")
    files = sorted(p.name for p in dump.glob("*.img") if not p.name.startswith("pages-"))
    originals = {n: (dump / n).read_bytes() for n in files}
    for _ in range(40):
        name = rng.choice(files)
        data = bytearray(originals[name])
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(8, len(data)) if len(data) > 8 else 0] = rng.randrange(256)
        (dump / name).write_bytes(bytes(data))
        entry = harness.at_path(str(dump))
        try:
            harness.walk(ImageDir(entry))
        finally:
            entry.close()
        (dump / name).write_bytes(originals[name])
