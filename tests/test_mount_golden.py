"""The mounted tree of images written by the C golden programs: every contract file holds
the values C wrote (not values from our own writer)."""

import json
import os
import subprocess

import pytest

from mountfs import Mount, errors_in_log
from digests import fnv1a64

PAGE = 4096
ARCH = {32: "i386", 64: "x86_64"}

# gdb register name -> the v4 cr_hdr_cpu member it comes from.
CR_CPU_REGS = {
    "i386": {"eax": "ax", "ecx": "cx", "edx": "dx", "ebx": "bx", "esp": "sp", "ebp": "bp",
             "esi": "si", "edi": "di", "eip": "ip", "eflags": "flags", "cs": "cs",
             "ss": "ss", "ds": "ds", "es": "es", "fs": "fs", "gs": "gs",
             "orig_eax": "orig_ax"},
    "x86_64": {"rax": "ax", "rbx": "bx", "rcx": "cx", "rdx": "dx", "rsi": "si", "rdi": "di",
               "rbp": "bp", "rsp": "sp", "r8": "r8", "r9": "r9", "r10": "r10", "r11": "r11",
               "r12": "r12", "r13": "r13", "r14": "r14", "r15": "r15", "rip": "ip",
               "eflags": "flags", "cs": "cs", "ss": "ss", "ds": "ds", "es": "es", "fs": "fs",
               "gs": "gs", "orig_rax": "orig_ax"},
}


@pytest.fixture(scope="module")
def golden_mount(build_c, tmp_path_factory):
    """One mount over the golden images of every format and ABI: {name: C's JSON}."""
    mount = Mount(tmp_path_factory.mktemp("golden"))
    written = {}
    for bits in (32, 64):
        for program, mode in (("ckpt_golden", None), ("cr_golden", "v4"),
                              ("cr_golden", "v14"), ("cpt_golden", None)):
            name = f"{program[:-7]}{'-' + mode if mode else ''}-m{bits}.img"
            args = [str(build_c(program, bits)), str(mount.store / name)]
            out = subprocess.run(args + ([mode] if mode else []), check=True,
                                 capture_output=True, text=True).stdout
            written[name] = json.loads(out)
    mount.mount()
    yield mount, written
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def read(path):
    return path.read_text()


def regs_file(path):
    return {name: int(value, 16) for name, value in
            (line.split() for line in read(path).splitlines())}


def maps_ranges(path):
    return [line.split()[0] for line in read(path).splitlines()]


def check_vmas(tdir, vmas, page_bytes):
    """maps, vmas/<range>/info and data, pages/<addr> and mem against C's VMAs.

    page_bytes(vma, page) -> the 4096 bytes C wrote there (or a digest check)."""
    ranges = [f"{v['start']:08x}-{v['end']:08x}" for v in vmas]
    assert maps_ranges(tdir / "mm" / "maps") == ranges
    assert sorted(os.listdir(tdir / "mm" / "vmas")) == sorted(ranges)
    all_pages = []
    for vma, name in zip(vmas, ranges):
        info = read(tdir / "mm" / "vmas" / name / "info")
        assert f"pages dumped: {len(vma['pages'])}\n" in info
        assert f"start: {vma['start']:#x}\n" in info
        for page in vma["pages"]:
            addr = page[0]
            all_pages.append(f"{addr:08x}")
            got = (tdir / "pages" / f"{addr:08x}").read_bytes()
            page_bytes(vma, page, got)
            with open(tdir / "mem", "rb") as mem:
                mem.seek(addr)
                assert mem.read(PAGE) == got
            with open(tdir / "mm" / "vmas" / name / "data", "rb") as data:
                data.seek(addr - vma["start"])
                assert data.read(PAGE) == got
    assert sorted(os.listdir(tdir / "pages")) == sorted(all_pages)


@pytest.mark.parametrize("bits", [32, 64])
def test_ckpt_golden_tree(golden_mount, bits):
    mount, written = golden_mount
    name = f"ckpt-m{bits}.img"
    c = written[name]
    root = mount / name
    assert read(root / "format") == f"linux-cr ckpt_hdr v21 {ARCH[bits]}\n"
    header = read(root / "header")
    for key in ("release", "version", "machine", "kernel"):
        assert f"{key}: {c['header'][key]}\n" in header
    assert read(root / "verify").endswith("result: sound\n")
    assert sorted(os.listdir(root / "tasks")) == sorted(str(t["pid"]) for t in c["tasks"])
    for task in c["tasks"]:
        tdir = root / "tasks" / str(task["pid"])
        assert read(tdir / "comm") == task["comm"] + "\n"
        status = read(tdir / "status")
        for key, field in (("Pid", "pid"), ("PPid", "ppid"), ("Tgid", "tgid")):
            assert f"{key}:\t{task[field]}\n" in status
        assert regs_file(tdir / "regs") == task["regs"]
        if task["fpu"] is None:
            assert not (tdir / "fpu").exists()
        else:
            assert (tdir / "fpu").read_bytes().hex() == task["fpu"]
        mm = c["mms"][task["mm"]]

        def page_bytes(vma, page, got):
            assert fnv1a64(got) == page[1]

        check_vmas(tdir, mm["vmas"], page_bytes)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("mode", ["v4", "v14"])
def test_cr_golden_tree(golden_mount, bits, mode):
    mount, written = golden_mount
    name = f"cr-{mode}-m{bits}.img"
    c = written[name]
    root = mount / name
    assert read(root / "format") == f"linux-cr cr_hdr {mode} {c['arch']}\n"
    assert f"release: {c['head']['release']}\n" in read(root / "header")
    assert read(root / "verify").endswith("result: sound\n")
    for task in c["tasks"]:
        tdir = root / "tasks" / str(task["task"]["pid"])
        assert read(tdir / "comm") == task["task"]["comm"] + "\n"
        assert f"Pid:\t{task['task']['pid']}\n" in read(tdir / "status")
        regs = regs_file(tdir / "regs")
        for gdb, member in CR_CPU_REGS[c["arch"]].items():
            assert regs[gdb] == task["cpu"][member], gdb
        private = [v for v in task["vmas"] if v.get("shm_objref", 0) == 0]

        def page_bytes(vma, page, got):
            assert got == bytes([page[1]]) * PAGE

        ranges = maps_ranges(tdir / "mm" / "maps")
        assert ranges == [f"{v['start']:08x}-{v['end']:08x}" for v in task["vmas"]]
        if len(private) == len(task["vmas"]):
            check_vmas(tdir, task["vmas"], page_bytes)


@pytest.mark.parametrize("bits", [32, 64])
def test_cpt_golden_tree(golden_mount, bits):
    mount, written = golden_mount
    name = f"cpt-m{bits}.img"
    objects = written[name]
    root = mount / name
    assert read(root / "format") == f"openvz cpt v2 {ARCH[bits]}\n"
    tasks = [o for o in objects if o["type"] == "CPT_OBJ_TASK"]
    assert sorted(os.listdir(root / "tasks")) == sorted(str(t["cpt_pid"]) for t in tasks)
    groups = []
    for obj in objects[1:]:
        if obj["type"] == "CPT_OBJ_TASK":
            groups.append([])
        groups[-1].append(obj)
    for task, group in zip(tasks, groups):
        tdir = root / "tasks" / str(task["cpt_pid"])
        assert read(tdir / "comm") == task["cpt_comm"] + "\n"
        status = read(tdir / "status")
        assert f"PPid:\t{task['cpt_ppid']}\n" in status
        assert f"Uid:\t{task['cpt_uid']}\t{task['cpt_euid']}\t" in status
        vmas = [o for o in group if o["type"] == "CPT_OBJ_VMA"]
        ranges = [f"{v['cpt_start']:08x}-{v['cpt_end']:08x}" for v in vmas]
        assert maps_ranges(tdir / "mm" / "maps") == ranges
        for block in (o for o in group if o["type"] == "CPT_OBJ_PAGES"):
            size = block["cpt_end"] - block["cpt_start"]
            with open(tdir / "mem", "rb") as mem:
                mem.seek(block["cpt_start"])
                got = mem.read(size)
            if block["cpt_content"] == 2:
                assert fnv1a64(got) == block["fnv"]
                first = (tdir / "pages" / f"{block['cpt_start']:08x}").read_bytes()
                assert first == got[:PAGE]
            else:
                assert got == bytes(size)
