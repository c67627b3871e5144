"""The crfs kernel module in a qemu guest: load, validate images, reject bad ones, unload.

Host drives guest: the host builds crfs.ko against Debian's kernel headers and writes every
test image, then ONE guest boot per session (part "kmod" of tests/conftest.py `guest_boot`)
runs tests/kmod_guest_checks.py, which loads the module, calls the ioctls and reports in
JSON. The tests below only read that report. Skipped when qemu or Debian's kernel is not installed,
unless CI=true (then kmod/harness/setup, run by .ci/setup, has installed them).
"""

import errno
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crfs.formats import ckpt as fmt
from crfs.formats.source import Source
from crfs.model import registry
from crfs.model.image import Task
from crfs.model.synth import synthetic_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_parts  # noqa: E402 - tests/guest_parts.py: the parts of the one guest boot
import guest_zdtm  # noqa: E402 - tests/guest_zdtm.py: the zdtm runner's start commands

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "kmod" / "harness"
GUEST_TIMEOUT = int(os.environ.get("CRFS_GUEST_TIMEOUT", 900))   # seconds (fuzz: ~4 min)
RESTORE_LIMIT = 1000    # the programs exit at this tick (~10 ms each): room for a slow CLI checkpoint
PAGE = 4096
HDR = struct.Struct("<II")

# --------------------------------------------------------------------------- images


def _dump(image, **options):
    out = io.BytesIO()
    registry.dump(image, out, "ckpt", **options)
    return out.getvalue()


def _records(data):
    """[(offset, name, len)] of a well-formed image."""
    out, offset = [], 0
    while offset < len(data):
        type_, length = HDR.unpack_from(data, offset)
        out.append((offset, fmt.record_name(type_), length))
        offset += length
    return out


def _nth(data, name, n=0):
    return [off for off, rec, _ in _records(data) if rec == name][n]


def _field(struct_, name):
    """Offset of field `name` (a.b for nested structs) in a construct Struct."""
    head, _, rest = name.partition(".")
    offset = 0
    for sub in struct_.subcons:
        if sub.name == head:
            return offset + (_field(sub.subcon, rest) if rest else 0)
        offset += sub.sizeof()
    raise KeyError(name)


PACK = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def _put(data, offset, size, value):
    data = bytearray(data)
    struct.pack_into(PACK[size], data, offset, value & ((1 << (8 * size)) - 1))
    return bytes(data)


def _set(data, record, field, value, n=0, size=None):
    """Set `field` of the n-th record named `record` (construct layout)."""
    struct_ = {**fmt.FIXED, **fmt.AT_LEAST}[record]
    offset = _nth(data, record, n) + _field(struct_, field)
    if size is None:
        head = field.split(".")[0]
        sub = next(s for s in struct_.subcons if s.name == head)
        size = sub.sizeof() if "." not in field else 2
    return _put(data, offset, size, value)


def _heap_vaddr(data, index):
    """Offset of vaddr[index] in the heap's page BUFFER (the 2nd VMA's contents)."""
    return _nth(data, "CKPT_HDR_PGARR", 2) + fmt.SIZE["CKPT_HDR_PGARR"] + 8 + 8 * index


def _len_of(data, name, n=0):
    return _nth(data, name, n) + 4


def _vma_range(data, n, start, end):
    return _set(_set(data, "CKPT_HDR_VMA", "vm_start", start, n), "CKPT_HDR_VMA", "vm_end",
                end, n)


def _replace_tail_with_error(data):
    tail = _nth(data, "CKPT_HDR_TAIL")
    return data[:tail] + HDR.pack(fmt.CKPT_HDR["CKPT_HDR_ERROR"], 8) + HDR.pack(
        fmt.CKPT_HDR["CKPT_HDR_STRING"], 8)


def _no_at_null(data):
    auxv = _nth(data, "CKPT_HDR_MM") + fmt.SIZE["CKPT_HDR_MM"]
    _, length = HDR.unpack_from(data, auxv)
    return data[:auxv + 8] + b"\x01" * (length - 8) + data[auxv + length:]


def _heap_chunk(data):
    return _nth(data, "CKPT_HDR_PGARR", 2) + fmt.SIZE["CKPT_HDR_PGARR"]


def _stack_start(data):
    return fmt.ckpt_hdr_vma.parse(data[_nth(data, "CKPT_HDR_VMA", 2):]).vm_start


def _heap_end(data):
    return fmt.ckpt_hdr_vma.parse(data[_nth(data, "CKPT_HDR_VMA", 1):]).vm_end


EINVAL, ENOEXEC = "EINVAL", "ENOEXEC"

# name -> (mutation of the valid synthetic image, expected errno, substring of err_msg)
MALFORMED = {
    "empty": (lambda d: b"", EINVAL, "too short"),
    "trunc_7": (lambda d: d[:7], EINVAL, "too short"),
    "trunc_in_header": (lambda d: d[:40], EINVAL, "too short"),
    "trunc_after_header": (lambda d: d[:72], EINVAL, ""),
    "trunc_in_pids": (lambda d: d[:_nth(d, "CKPT_HDR_TREE") + 30], EINVAL, ""),
    "trunc_in_vma": (lambda d: d[:_nth(d, "CKPT_HDR_VMA", 1) + 50], EINVAL, ""),
    "trunc_in_pages": (lambda d: d[:_heap_chunk(d) + 5000], EINVAL, "nr_pages 16 exceeds"),
    "trunc_in_tail": (lambda d: d[:-1], EINVAL, ""),
    "no_tail": (lambda d: d[:-16], EINVAL, "missing CKPT_HDR_TAIL"),
    "len_header_plus_1": (lambda d: _put(d, 4, 4, 73), EINVAL, "expected 72"),
    "len_vma_plus_8": (lambda d: _put(d, _len_of(d, "CKPT_HDR_VMA"), 4, 80), EINVAL,
                       "expected 72"),
    "len_buffer_high_bit": (lambda d: _put(d, _heap_chunk(d) + 4, 4, 0x80000000 | 8216),
                            EINVAL, "past the end"),
    "len_pgarr_4": (lambda d: _put(d, _len_of(d, "CKPT_HDR_PGARR"), 4, 4), EINVAL,
                    "shorter than its header"),
    "len_string_flip": (lambda d: _put(d, _len_of(d, "CKPT_HDR_STRING"), 4, 24 ^ 0x1000),
                        EINVAL, ""),
    "nr_pages_huge": (lambda d: _set(d, "CKPT_HDR_PGARR", "nr_pages", 1 << 40, 2), EINVAL,
                      "nr_pages"),
    "nr_pages_over_batch": (lambda d: _set(d, "CKPT_HDR_PGARR", "nr_pages", 8193, 2), EINVAL,
                            "nr_pages"),
    "nr_pages_plus_1": (lambda d: _set(d, "CKPT_HDR_PGARR", "nr_pages", 17, 2), EINVAL, ""),
    "nr_tasks_huge": (lambda d: _set(d, "CKPT_HDR_TREE", "nr_tasks", 0x7FFFFFFF), EINVAL,
                      "nr_tasks"),
    "nr_tasks_negative": (lambda d: _set(d, "CKPT_HDR_TREE", "nr_tasks", -1), EINVAL,
                          "nr_tasks"),
    "nr_tasks_zero": (lambda d: _set(d, "CKPT_HDR_TREE", "nr_tasks", 0), EINVAL, "nr_tasks"),
    "nr_tasks_2": (lambda d: _set(d, "CKPT_HDR_TREE", "nr_tasks", 2), EINVAL, ""),
    "pid_depth_33": (lambda d: _put(d, _nth(d, "CKPT_HDR_BUFFER", 3) + 8 + 20, 4, 33), EINVAL,
                     "depth"),
    "map_count_huge": (lambda d: _set(d, "CKPT_HDR_MM", "map_count", 0xFFFFFFFF), EINVAL,
                       "map_count"),
    "map_count_plus_1": (lambda d: _set(d, "CKPT_HDR_MM", "map_count", 4), EINVAL,
                         "unexpected"),
    "map_count_minus_1": (lambda d: _set(d, "CKPT_HDR_MM", "map_count", 2), EINVAL,
                          "unexpected"),
    "nldt_huge": (lambda d: _set(d, "CKPT_HDR_MM_CONTEXT", "nldt", 0xFFFFFFFF), EINVAL,
                  "LDT"),
    "at_vector_size_huge": (lambda d: _set(d, "CKPT_HDR_HEADER", "constants.at_vector_size",
                                           0xFFFF), EINVAL, "auxv"),
    "auxv_without_at_null": (_no_at_null, EINVAL, "AT_NULL"),
    "vma_above_task_size": (lambda d: _vma_range(d, 1, 0xFFFF800000000000,
                                                 0xFFFF800000000000 + 64 * PAGE), EINVAL,
                            "bad range"),
    "vma_end_2_63": (lambda d: _set(d, "CKPT_HDR_VMA", "vm_end", 1 << 63, 2), EINVAL,
                     "bad range"),
    "vma_unaligned": (lambda d: _set(d, "CKPT_HDR_VMA", "vm_start", 0x10000001, 1), EINVAL,
                      "bad range"),
    "vma_empty": (lambda d: _set(d, "CKPT_HDR_VMA", "vm_end", 0x10000000, 1), EINVAL,
                  "bad range"),
    "vmas_overlap": (lambda d: _set(d, "CKPT_HDR_VMA", "vm_end", _stack_start(d) + PAGE, 1),
                     EINVAL, "overlaps"),
    "vmas_descending": (lambda d: _vma_range(d, 1, 0x100000, 0x100000 + 16 * PAGE), EINVAL,
                        "overlaps"),
    "vaddr_unaligned": (lambda d: _put(d, _heap_vaddr(d, 0), 8, 0x10000008), EINVAL,
                        "not aligned"),
    "vaddr_descending": (lambda d: _put(d, _heap_vaddr(d, 1), 8, 0x10000000), EINVAL,
                         "ascending"),
    "vaddr_outside_vma": (lambda d: _put(d, _heap_vaddr(d, 15), 8, _heap_end(d)), EINVAL,
                          "inside"),
    "fs_base_kernel": (lambda d: _set(d, "CKPT_HDR_CPU", "fs", 1 << 63), EINVAL, "fs base"),
    "bad_segment_code": (lambda d: _set(d, "CKPT_HDR_CPU", "cs", 0x99), EINVAL, "segment"),
    "tls_entries_4": (lambda d: _set(d, "CKPT_HDR_THREAD", "gdt_entry_tls_entries", 4), EINVAL,
                      "TLS"),
    "xstate_size_mismatch": (lambda d: _set(d, "CKPT_HDR_HEADER_ARCH", "xstate_size", 1024),
                             EINVAL, "expected 1024"),
    "mm_objref_unknown": (lambda d: _set(d, "CKPT_HDR_TASK_OBJS", "mm_objref", 99), EINVAL,
                          "mm_objref"),
    "objref_not_new": (lambda d: _set(d, "CKPT_HDR_OBJREF", "objref", 1, 1), EINVAL,
                       "not new"),
    "objref_negative": (lambda d: _set(d, "CKPT_HDR_OBJREF", "objref", -5), EINVAL, "objref"),
    "file_vma_without_file": (lambda d: _set(d, "CKPT_HDR_VMA", "vma_objref", 0, 0), EINVAL,
                              "vma_objref"),
    "vma_type_unknown": (lambda d: _set(d, "CKPT_HDR_VMA", "vma_type", 42, 1), EINVAL,
                         "vma_type"),
    "head_magic": (lambda d: _put(d, 8, 1, d[8] ^ 0x10), EINVAL, "bad magic"),
    "tail_magic": (lambda d: _put(d, len(d) - 8, 1, d[-8] ^ 0x10), EINVAL, "bad magic"),
    "after_trailer": (lambda d: d + bytes(8), EINVAL, "after the trailer"),
    "uts_release_len": (lambda d: _set(d, "CKPT_HDR_HEADER", "constants.uts_release_len", 66),
                        EINVAL, ""),
    "error_record": (_replace_tail_with_error, EINVAL, "checkpoint failed"),
    "arch_x86_32": (lambda d: _set(d, "CKPT_HDR_HEADER", "arch_id", 1), ENOEXEC, "x86_64"),
    "format_version_2": (lambda d: _set(d, "CKPT_HDR_HEADER", "rev", 2), ENOEXEC, "version"),
}

FIFO = "/tmp/crfs-sec.fifo"     # made by the guest checks before the images are tried


def _mapping(path):
    """The valid synthetic image with its text VMA mapping `path` instead of a program."""
    image = synthetic_image(heap_pages=16)
    image.tasks[0].mm.vmas[0].file = path
    return _dump(image)


def _in_syscall(ip):
    """The valid synthetic image stopped in read(2) (orig_ax 0) with ax -ERESTARTSYS at
    `ip`: the restart fix-up moves ip 2 bytes back, below 0 for ip 0 and 1."""
    def mutate(d):
        d = _set(d, "CKPT_HDR_CPU", "ip", ip)
        d = _set(d, "CKPT_HDR_CPU", "orig_ax", 0)
        return _set(d, "CKPT_HDR_CPU", "ax", -512)
    return mutate


# name -> (image, errno of RESTART from a forked child, substring of err_msg): well-formed
# images (CHECK passes) that RESTART must refuse before the point of no return. Before
# these checks, each went on (ENOENT at /usr/bin/synth, or restored, or hung on the FIFO).
REFUSED_AT_RESTART = {
    "maps_dev_zero": (lambda d: _mapping("/dev/zero"), EINVAL,
                      "/dev/zero is not a regular file"),
    "maps_a_fifo": (lambda d: _mapping(FIFO), EINVAL, f"{FIFO} is not a regular file"),
    "maps_a_directory": (lambda d: _mapping("/tmp"), EINVAL, "/tmp is not a regular file"),
    "ip_0_in_syscall": (_in_syscall(0), EINVAL, "after the system call restart"),
    "ip_1_in_syscall": (_in_syscall(1), EINVAL, "after the system call restart"),
    "mm_code_reversed": (lambda d: _set(d, "CKPT_HDR_MM", "end_code", 0x3ff000), EINVAL,
                         "out of order"),
    "mm_start_code_0": (lambda d: _set(d, "CKPT_HDR_MM", "start_code", 0), EINVAL,
                        "mm start_code 0x0 is not a user address"),
    "mm_env_reversed": (lambda d: _set(d, "CKPT_HDR_MM", "env_end", 0x7ffffffd0000), EINVAL,
                        "out of order"),
    "mm_arg_outside_vmas": (lambda d: _set(_set(d, "CKPT_HDR_MM", "arg_start", 0x20000000),
                                           "CKPT_HDR_MM", "arg_end", 0x20000010), EINVAL,
                            "not inside one VMA"),
}

FUZZ_CASES = 40
FUZZ_ALLOWED = {0, "EOPNOTSUPP", EINVAL, ENOEXEC}


def _fuzz_images(valid, seed=0xC4F5):
    """Single-byte corruptions of the metadata (not the page bytes) of `valid`."""
    rng = random.Random(seed)
    metadata = []
    for offset, name, length in _records(valid):
        end = offset + (length if name != "CKPT_HDR_BUFFER" or length < 4096 else 8 + 8 * 16)
        metadata.extend(range(offset, min(end, offset + length)))
    for _ in range(FUZZ_CASES):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            data[rng.choice(metadata)] ^= 1 << rng.randrange(8)
        yield bytes(data)


def _user_addresses(data):
    """The golden C image with its tagged pattern values in address fields (fs/gs bases,
    mm start_code..env_end: kernel-half addresses; a file pgoff beyond 2^64 bytes), which
    the module rightly refuses, replaced by plausible ones; every other byte is as the C
    program wrote it."""
    names = [r[1] for r in _records(data)]
    for n in range(names.count("CKPT_HDR_CPU")):
        data = _set(_set(data, "CKPT_HDR_CPU", "fs", 0x7F0000001000 + n * PAGE, n),
                    "CKPT_HDR_CPU", "gs", 0, n)
    for n in range(names.count("CKPT_HDR_MM")):
        for field in fmt.MM_ADDRESSES:
            data = _set(data, "CKPT_HDR_MM", field, 0x400000, n)
    for n in range(names.count("CKPT_HDR_VMA")):
        vma = fmt.ckpt_hdr_vma.parse(data[_nth(data, "CKPT_HDR_VMA", n):])
        if vma.vma_type == fmt.CKPT_VMA["CKPT_VMA_FILE"] and vma.vm_pgoff >> 40:
            data = _set(data, "CKPT_HDR_VMA", "vm_pgoff", 0, n)
    return data


def _multi_task_image():
    """3 tasks: a process, its thread (same mm), and a second process with its own mm."""
    first = synthetic_image(heap_pages=3, pid=100)
    second = synthetic_image(heap_pages=2, pid=200, comm="second", seed=0xBEEF)
    leader = first.tasks[0]
    thread = Task(pid=101, tgid=100, ppid=1, comm="thread", state=0, mm=leader.mm,
                  regs=leader.regs, fpu=leader.fpu, tls=[0, 0, 0])
    first.tasks = [leader, thread, second.tasks[0]]
    return first


# --------------------------------------------------------------------------- the guest run


@guest_parts.part("kmod")
def prepare_guest(work, build_c, tmp_path_factory):
    """Part "kmod" of the session's one guest boot (tests/guest_parts.py, conftest
    `guest_boot`): crfs.ko, the images and programs built here, then
    tests/kmod_guest_checks.py in the guest."""
    timings = {}

    # the module, built out of the source tree
    build_dir = work / "kmod"
    build_dir.mkdir()
    for name in os.listdir(REPO / "kmod"):
        if name.endswith((".c", ".h")) or name in ("Kbuild", "Makefile"):
            shutil.copy(REPO / "kmod" / name, build_dir / name)
    t0 = time.monotonic()
    make = subprocess.run(["make", "-C", str(build_dir)], capture_output=True, text=True)
    timings["build"] = time.monotonic() - t0
    assert make.returncode == 0, make.stdout + make.stderr
    assert "warning" not in (make.stdout + make.stderr).lower(), make.stdout + make.stderr

    # the images
    images = work / "images"
    images.mkdir()
    valid = _dump(synthetic_image(heap_pages=16))
    manifest = {"images": [], "scratch": "/tmp", "valid": str(images / "valid.img"),
                "invalid": str(images / "vmas_overlap.img"),
                # crfs's own reader accepts it, the module does not
                "kernel_invalid": str(images / "fs_base_kernel.img")}

    def add(name, data, ops=("check",)):
        path = images / f"{name}.img"
        path.write_bytes(data)
        manifest["images"].append({"name": name, "path": str(path), "ops": list(ops)})

    golden_exe = build_c("ckpt_golden", 64)
    golden = images / "golden.img"
    subprocess.run([str(golden_exe), str(golden)], check=True, capture_output=True)
    good = {
        "valid": valid,
        "golden_c_writer": _user_addresses(golden.read_bytes()),
        "multi_task": _dump(_multi_task_image()),
        "two_pgarr_chunks": _dump(synthetic_image(heap_pages=fmt.CKPT_PGARR_BATCH["x86_64"] + 8,
                                                  pid=7)),
        "page_byte_flipped": valid[:_heap_chunk(valid) + 8 + 8 * 16 + 100] + b"\xff"
        + valid[_heap_chunk(valid) + 8 + 8 * 16 + 101:],
    }
    for name, data in good.items():
        with Source.open(_write_tmp(work, data)) as source:
            registry.load(source)     # crfs's own reader accepts them too
        add(name, data, ("check", "restart"))
    add("i386_image", _dump(synthetic_image("i386", heap_pages=2)), ("check", "restart"))
    for name, (mutate, _, _) in MALFORMED.items():
        add(name, mutate(valid), ("check", "restart"))
    manifest["fifo"] = FIFO
    for name, (mutate, _, _) in REFUSED_AT_RESTART.items():
        add(name, mutate(valid), ("check", "restart"))
    for i, data in enumerate(_fuzz_images(valid)):
        add(f"fuzz_{i}", data)
    # the programs restored for real (built here, checkpointed and restarted in the guest)
    restore = work / "restore"
    restore.mkdir()
    datafile = restore / "restore.data"
    datafile.write_bytes(b"A" * PAGE + b"B" * PAGE)
    manifest["restore"] = {
        "work": str(restore), "datafile": str(datafile), "limit": RESTORE_LIMIT,
        "restarter": str(build_dir / "crfs-restart"),
        "front": str(build_dir / "crfs-front"),
        "counter64": str(build_c("ckpt_counter", 64)),
        "counter32": str(build_c("ckpt_counter", 32)),
        "targets": {"static": str(build_c("restore_target", 64, "-static")),
                    "dynamic": str(build_c("restore_target", 64))},
        "tree_target": str(build_c("tree_target", 64)),
        "fown_target": str(build_c("fown_target", 64)),
        "threads_target": str(build_c("threads_target", 64, "-pthread")),
        "files_target": str(build_c("files_target", 64)),
        "files_tree_target": str(build_c("files_tree_target", 64)),
        "shm_tree_target": str(build_c("shm_tree_target", 64)),
        "ckpt_threads": str(build_c("ckpt_threads", 64, "-pthread")),
        "ckpt_rewrite": str(build_c("ckpt_rewrite", 64, "-pthread")),
        "sig_target": str(build_c("sig_target", 64)),
        "anonfd_target": str(build_c("anonfd_target", 64)),
        "pipes_target": str(build_c("pipes_target", 64)),
        "state_target": str(build_c("state_target", 64)),
        "taskattr_target": str(build_c("taskattr_target", 64)),
        "deleted_target": str(build_c("deleted_target", 64)),
        "exe_memfd_target": str(build_c("exe_memfd_target", 64)),
        "unix_target": str(build_c("unix_target", 64)),
        "sockstrict_target": str(build_c("sockstrict_target", 64)),
        "timers_target": str(build_c("timers_target", 64, "-pthread")),
        "lazy_target": str(build_c("lazy_target", 64, "-pthread"))}
    manifest["zdtm"], zdtm_error = _build_zdtm(work) if _step_selected("zdtm") else (None, None)
    timeout = GUEST_TIMEOUT + (ZDTM_BUDGET if manifest["zdtm"] else 0)
    if manifest["zdtm"]:
        manifest["zdtm"]["guest_timeout"] = timeout    # the step ends before the guest does
    (work / "manifest.json").write_text(json.dumps(manifest))

    results = work / "results.json"
    steps = os.environ.get("CRFS_GUEST_STEPS")
    return {"argv": [sys.executable, str(REPO / "tests" / "kmod_guest_checks.py"),
                     str(build_dir / "crfs.ko"), str(work / "manifest.json"), str(results)],
            "env": {"CRFS_GUEST_STEPS": steps} if steps else {}, "results": results,
            "timeout": timeout,
            # maps04 dirties 512 MiB, then its image needs as much of the guest's tmpfs
            "memory": "2G" if manifest["zdtm"] else None,
            "host": {"timings": timings, "zdtm": manifest["zdtm"], "zdtm_error": zdtm_error}}


@pytest.fixture(scope="session")
def guest(guest_boot):
    part = guest_parts.result(guest_boot, "kmod")
    host = part["host"]
    status = part.get("part_status") or {}
    host["timings"]["guest"] = status.get("seconds")
    print(f"\nkmod guest: build {host['timings']['build']:.1f}s, guest part "
          f"{status.get('seconds')}s")
    return {"rc": part["rc"], "stdout": part["stdout"], "stderr": part["stderr"],
            "report": part["report"], "timings": host["timings"],
            "zdtm": _zdtm_results(host["zdtm"], host["zdtm_error"])}


def _write_tmp(work, data):
    path = work / "check.tmp"
    path.write_bytes(data)
    return str(path)


def _report(guest):
    assert guest["report"] is not None, (
        f"no results from the guest (harness status {guest['rc']}):\n{guest['stderr'][-3000:]}"
        f"\n{guest['stdout'][-3000:]}")
    return guest["report"]


# --------------------------------------------------------------------------- tests


def test_guest_run_is_clean(guest):
    """The harness status: 0, i.e. no WARN/BUG/Oops/panic, no timeout."""
    meaning = {121: "kernel Oops/BUG", 122: "kernel WARNING", 123: "kernel panic",
               124: "timeout", 125: "guest died"}
    assert guest["rc"] == 0, (f"{meaning.get(guest['rc'], 'failed')}:\n"
                              f"{guest['stderr'][-4000:]}\n{guest['stdout'][-2000:]}")


def test_module_loads_and_device_appears(guest):
    steps = _report(guest)["steps"]
    assert steps["insmod"]["rc"] == 0, steps["insmod"]["stderr"]
    assert steps["device"] == {"char": True, "mode": 0o600}
    assert steps["version"] == 1


# valid image -> (errno of RESTART from a forked child, phrase): refused before the point of
# no return, the caller intact (the synthetic images map a program that does not exist)
VALID_RESTART = {
    "valid": ("ENOENT", "cannot open /usr/bin/synth"),
    # two threads in its first process (its third maps memory the first one dumped: that
    # is restored since shared anonymous memory is)
    "golden_c_writer": ("EBUSY", "the image's process has 2 threads, the caller 1"),
    "multi_task": ("EBUSY", "the image's process has 2 threads, the caller 1"),
    "two_pgarr_chunks": ("ENOENT", "cannot open /usr/bin/synth"),
    "page_byte_flipped": ("ENOENT", "cannot open /usr/bin/synth"),
}


@pytest.mark.parametrize("name", VALID_RESTART)
def test_valid_image_passes_validation(guest, name):
    result = _report(guest)["images"][name]
    assert result["check"]["errno"] == 0, result["check"]
    code, words = VALID_RESTART[name]
    assert result["restart"]["errno"] == code, result["restart"]
    assert words in result["restart"]["msg"]


def test_other_arch_is_not_restartable(guest):
    result = _report(guest)["images"]["i386_image"]
    assert result["check"]["errno"] == ENOEXEC, result
    assert result["restart"]["errno"] == ENOEXEC, result


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_image_is_rejected(guest, name):
    _, expected, words = MALFORMED[name]
    result = _report(guest)["images"][name]
    for op in ("check", "restart"):
        assert result[op]["errno"] == expected, result[op]
        assert words in result[op]["msg"], result[op]


@pytest.mark.parametrize("name", REFUSED_AT_RESTART)
def test_restart_refuses_what_the_kernel_would_not_allow(guest, name):
    """Images CHECK accepts, refused by RESTART with the caller intact: a mapped file that
    is not a regular file (a device, a FIFO, a directory: never opened, so nothing blocks
    and no tty is acquired), an ip that the syscall-restart fix-up moves out of user space,
    mm fields prctl(PR_SET_MM_MAP) would refuse."""
    _, expected, words = REFUSED_AT_RESTART[name]
    result = _report(guest)["images"][name]
    assert result["check"]["errno"] == 0, result["check"]
    assert result["restart"]["errno"] == expected, result["restart"]
    assert words in result["restart"]["msg"], result["restart"]


def test_rejections_say_where(guest):
    result = _report(guest)["images"]["vmas_overlap"]["check"]
    valid = _dump(synthetic_image(heap_pages=16))
    assert result["offset"] == _nth(valid, "CKPT_HDR_VMA", 2)
    assert result["type"] == fmt.CKPT_HDR["CKPT_HDR_VMA"]


def test_fuzzed_images_never_break_the_kernel(guest):
    images = _report(guest)["images"]
    outcomes = {images[f"fuzz_{i}"]["check"]["errno"] for i in range(FUZZ_CASES)}
    assert outcomes <= FUZZ_ALLOWED, outcomes
    assert EINVAL in outcomes


def test_descriptors_that_are_not_images(guest):
    special = _report(guest)["steps"]["special"]
    assert special["dev_null"]["errno"] == EINVAL
    assert special["directory"]["errno"] == EINVAL
    assert special["pipe"]["errno"] == EINVAL
    assert special["write_only"]["errno"] == "EBADF"
    assert special["o_path"]["errno"] == "EBADF"
    assert special["closed_fd"]["errno"] == "EBADF"
    assert special["negative_fd"]["errno"] == "EBADF"
    assert special["flags_set"]["errno"] == EINVAL
    assert special["task_index_past_tasks"]["errno"] == EINVAL
    assert special["bad_pointer"]["errno"] == "EFAULT"
    assert special["huge_sparse"]["errno"] == "EFBIG"
    assert special["unknown_ioctl"]["errno"] == "ENOTTY"


def test_restarter_child_reports_the_kernel_outcome(guest):
    steps = _report(guest)["steps"]
    assert steps["child_valid"]["errno"] == "ENOENT", steps["child_valid"]
    assert steps["child_valid"]["stage"] == "restart"
    assert steps["child_invalid"]["errno"] == EINVAL, steps["child_invalid"]
    assert "overlaps" in steps["child_invalid"]["msg"]
    assert steps["child_invalid"]["type"] == fmt.CKPT_HDR["CKPT_HDR_VMA"]


def test_restart_dir_hands_images_to_the_module(guest):
    """cp img /ckpt/restart/ on a crfs mount in the guest: close(2) fails with the module's
    verdict and restart/<name>.status says why."""
    fuse = _report(guest)["steps"]["fuse"]
    assert fuse["mount"]["rc"] == 0, fuse
    assert fuse["valid"]["rc"] != 0
    assert "No such file or directory" in fuse["valid"]["stderr"], fuse["valid"]
    assert "cannot open /usr/bin/synth" in fuse["valid"]["status"], fuse["valid"]
    assert "state: failed" in fuse["valid"]["status"], fuse["valid"]
    assert fuse["invalid"]["rc"] != 0
    assert "Invalid argument" in fuse["invalid"]["stderr"], fuse["invalid"]
    status = fuse["invalid"]["status"]
    assert "state: rejected" in status, status
    assert "the kernel module rejected the image: offset 0x" in status, status
    assert "CKPT_HDR_CPU: fs base" in status, status


# --------------------------------------------------------------------------- real restores

TICK_OK = "heap=ok file=ok shm=ok sse=ok x87=ok mxcsr=ok"


def _ticks(lines):
    """[(tick, pid, mono)] of restore_target's output lines; every check must be ok."""
    out = []
    for line in lines:
        words = line.split()
        assert words[0] == "tick" and TICK_OK in line, line
        out.append((int(words[1]), int(words[2][4:]), int(words[-1][5:])))
    return out


def _continues(before, after, exit_state, same_pid=True):
    """The restored output starts at the tick after the last one before the checkpoint,
    counts without a gap up to the limit, in one pid (the image's, when `same_pid`: the
    restarter runs as root and the pid is free), and the vDSO clock goes on."""
    first, last = _ticks(before), _ticks(after)
    assert last, "no output after the restore"
    assert last[0][0] == first[-1][0] + 1, (first[-1], last[0])
    assert [t for t, _, _ in last] == list(range(last[0][0], RESTORE_LIMIT + 1))
    assert (last[0][1] == first[-1][1]) == same_pid and len({p for _, p, _ in last}) == 1
    assert all(b[2] > a[2] for a, b in zip(first[-1:] + last, last))
    assert exit_state == "exited 3"


@pytest.mark.parametrize("label", ["static", "dynamic"])
def test_restore_continues_a_real_program(guest, label):
    """restore_target under setarch -R, `crfs checkpoint --kill` (the CLI for the static
    one), then crfs-restart: its count, heap, written private file page, shared page,
    xmm8, st(0), MXCSR and vDSO clock all carry on, and it exits at its limit."""
    run = _report(guest)["steps"]["restore"][label]
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    assert run["checkpoint"]["returncode"] == -9     # --kill
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    _continues(run["checkpoint"]["before"], restart["after"], restart["exit"])


def test_restart_of_an_incremental_chain(guest):
    """Debian 6.1 has soft-dirty: restore_target checkpointed as a chain of three (two
    snapshots, then --kill), the grandchild flattened and restarted: it carries on."""
    run = _report(guest)["steps"]["chain"]
    assert "error" not in run, run["error"] if "error" in run else None
    assert run["tracking"] == "CRFS_TRACKING_SOFT_DIRTY"
    assert [r["mode"] for r in run["reports"]] == ["snapshot", "snapshot", "stop"]
    assert [bool(r["parent"]) for r in run["reports"]] == [False, True, True]
    assert [name for name, _ in run["chain"]] == ["chain-b.img", "chain-a.img"]
    assert run["returncode"] == -9
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    _continues(run["before"], restart["after"], restart["exit"])


# error -> (errno, stage, phrase); all but the last are refused with the caller intact
RESTORE_ERRORS = {
    "vdso_not_moved": ("EOPNOTSUPP", None, "image vdso at 0x"),
    "threaded_caller": ("EBUSY", None, "single-threaded"),
    "missing_file": ("ENOENT", "restart", "cannot open /"),
    "bad_xstate": ("EINVAL", "restart", "xstate"),
}


@pytest.mark.parametrize("name", RESTORE_ERRORS)
def test_restore_refusals_leave_the_caller_intact(guest, name):
    result = _report(guest)["steps"]["restore"]["errors"][name]
    code, stage, words = RESTORE_ERRORS[name]
    assert result["errno"] == code, result
    assert words in result["msg"], result
    if stage:
        assert result["stage"] == stage
        # the restarter itself said so on its stderr: it was still itself
        assert result["after"] == [f"crfs-restart: restart: {os.strerror(getattr(errno, code))}: {result['msg']}"]


def test_failure_after_the_point_of_no_return_kills(guest):
    """A page that cannot be filled (its file mapping moved past the end of the file):
    the restore is past the point of no return, so the process is killed, never left
    half restored; it printed nothing."""
    result = _report(guest)["steps"]["restore"]["errors"]["post_ponr_fault"]
    assert result["errno"] == 0, result
    assert result["exit"] == "killed by SIGKILL"
    assert result["after"] == []


# restart/ entry -> where its program's output before the checkpoint is in the report
FUSE_PROGRAMS = {
    "restore": ("restore", "dynamic", "checkpoint", "before"),        # crfs checkpoint
    "static": ("restore", "static", "checkpoint", "before"),
    "kernel_restore": ("kernel_checkpoint", "before"),                # the module's
}


def _dig(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _fuse(steps, key):
    fuse = steps["fuse"][key]
    assert fuse["rc"] == 0, (fuse, steps["fuse"].get("log_tail"))
    assert "state: running" in fuse["first_status"], fuse["first_status"]
    assert "state: exited 3" in fuse["status"], fuse["status"]
    return fuse


@pytest.mark.parametrize("key", FUSE_PROGRAMS)
def test_restart_dir_restores_a_real_program(guest, key):
    """cp img /ckpt/restart/ in the guest, for images written by crfs (dynamic and static
    program) and by the module: close(2) succeeds, the status says running with the
    program's pid (the image's), then exited 3; the program writes on to its own stdout
    file (reopened at its position), continuing; restart/<name>.log has nothing."""
    steps = _report(guest)["steps"]
    fuse = _fuse(steps, key)
    name = {"restore": "prog.img", "static": "static.img",
            "kernel_restore": "kernel-prog.img"}[key]
    assert {f"{name}.status", f"{name}.log"} <= set(fuse["listing_while_running"]), fuse
    before = _dig(steps, FUSE_PROGRAMS[key])
    _continues(before, fuse["lines"], "exited 3")
    assert fuse["log"] == [], fuse["log"]
    assert f"pid: {_ticks(before)[-1][1]}\n" in fuse["first_status"], fuse["first_status"]


def test_restart_dir_leaves_nothing_running(guest):
    """Every program restored through restart/ ran to its end: none of them, and none of
    their restarters, is left."""
    assert _report(guest)["steps"]["fuse"]["survivors"] == []


def _counts(lines, who):
    """[(tick, pid, ppid)] of tree_target's `who` lines; every heap check must be ok."""
    out = []
    for line in lines:
        words = line.split()
        if words[0] == who and words[1].isdigit():
            assert words[-1] == "heap=ok", line
            out.append((int(words[1]), int(words[2][4:]), int(words[3][5:])))
    return out


def test_restore_continues_a_process_tree(guest):
    """tree_target (a parent and its forked child) under setarch -R, `crfs checkpoint --tree
    --kill`, then crfs-restart: both count on from where they were, with their pids, the child
    under the restored parent (its getppid() and /proc PPid), and the parent reaps it."""
    run = _report(guest)["steps"]["tree"]
    ck = run["checkpoint"]
    assert ck["rc"] == 0 and ck["returncode"] == -9, ck
    parent, child = _tree_restarted(ck["before"], run["restart"])
    assert run["restart"]["proc"] == {"pid": child, "ppid": parent, "name": "tree_target-m64"}


def _tree_restarted(before, restart):
    """A tree_target image restarted by crfs-restart: both processes count on to the limit
    with their pids, the child under the restored parent, which reaps it; nothing is left.
    (parent pid, child pid)."""
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    assert restart["exit"] == "exited 3", restart
    after = restart["after"]
    for who in ("parent", "child"):
        first, last = _counts(before, who), _counts(after, who)
        assert first and last, (who, after[-5:])
        assert [t for t, _, _ in last] == list(range(first[-1][0] + 1, RESTORE_LIMIT + 1)), who
        assert len({p for _, p, _ in last}) == 1 and last[0][1] == first[-1][1], who
    parent = _counts(after, "parent")[0][1]
    child = _counts(after, "child")[0][1]
    assert parent == restart["root"]
    assert {pp for _, _, pp in _counts(after, "child")} == {parent}
    assert after[-1] == f"parent reaped pid={child} status=5"
    assert restart["survivors"] == []
    return parent, child


@pytest.mark.parametrize("key", ["tree", "kernel_tree"])
def test_restart_dir_restores_a_process_tree(guest, key):
    """cp tree.img /ckpt/restart/ in the guest, for crfs's image and the module's: close(2)
    succeeds, the status says running with the parent's pid, then exited 3; their
    shared stdout file has both processes' counts, continuing."""
    steps = _report(guest)["steps"]
    fuse = _fuse(steps, key)
    before = (steps["tree"]["checkpoint"]["before"] if key == "tree"
              else steps["kernel_checkpoint_tree"]["before"])
    after = fuse["lines"]
    for who in ("parent", "child"):
        first, last = _counts(before, who), _counts(after, who)
        assert first and last, (who, after[-5:])
        assert [t for t, _, _ in last] == list(range(first[-1][0] + 1, RESTORE_LIMIT + 1)), who
    parent = _counts(after, "parent")[0][1]
    assert f"pid: {parent}\n" in fuse["first_status"], (parent, fuse["first_status"])
    assert {pp for _, _, pp in _counts(after, "child")} == {parent}
    assert after[-1].startswith("parent reaped pid="), after[-3:]


def test_refused_task_of_a_tree_kills_the_tree(guest):
    """Task 1 of the tree says 32-bit: its process reports the refusal (naming the task)
    and kills the process group, so no process of the tree is left, restored or not."""
    refused = _report(guest)["steps"]["tree"]["refused"]
    assert refused["errno"] == "EOPNOTSUPP", refused
    assert refused["msg"].startswith("task 1: not a 64-bit task"), refused
    assert refused["survivors"] == [], refused


THREADS = ("main", "worker1", "worker2")


def _thread_counts(lines, who):
    """[(tick, pid, tid)] of threads_target's `who` lines; every check must be ok."""
    out = []
    for line in lines:
        words = line.split()
        if words[0] == who:
            assert words[-3:] == ["tls=ok", "heap=ok", "fpu=ok"], line
            out.append((int(words[1]), int(words[2][4:]), int(words[3][4:])))
    return out


def _threads_continue(before, after):
    """Each thread of threads_target counts on from its last tick to the limit, all in one
    process, each in its own thread, with the image's pid and tids; then the main thread
    joins both workers."""
    pids, tids = set(), set()
    for who in THREADS:
        first, last = _thread_counts(before, who), _thread_counts(after, who)
        assert first and last, (who, after[-5:])
        assert [t for t, _, _ in last] == list(range(first[-1][0] + 1, RESTORE_LIMIT + 1)), who
        assert len({p for _, p, _ in last}) == 1 and len({t for _, _, t in last}) == 1, who
        assert last[0][1:] == first[-1][1:], who     # the image's pid and tid
        pids.add(last[0][1])
        tids.add(last[0][2])
    assert len(pids) == 1 and len(tids) == len(THREADS)
    assert after[-1] == "joined 2", after[-3:]
    return pids.pop()


@pytest.mark.parametrize("via", ["ptrace", "kernel"])
def test_restore_continues_a_multithreaded_process(guest, via):
    """threads_target (main + 2 pthreads) under setarch -R, `crfs checkpoint --kill` (by
    crfs, or by the module), then crfs-restart: one process of 3 threads again; every
    thread's count, __thread variable (fs base), heap arena and xmm9 carry on;
    pthread_join returns for both workers (the kernel clears each restored thread's
    clear_child_tid) and it exits at its limit."""
    run = _report(guest)["steps"]["threads"]
    run = run if via == "ptrace" else run["kernel"]
    ck = run["checkpoint"]
    assert ck["rc"] == 0 and ck["returncode"] == -9, ck["stderr"]
    assert ck["proc"]["threads"] == 3, ck["proc"]
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    pid = _threads_continue(ck["before"], restart["after"])
    assert pid == restart["pid"]
    assert restart["proc"]["threads"] == 3 and restart["proc"]["tids"][0] == pid, restart
    assert restart["exit"] == "exited 3", restart
    assert restart["survivors"] == []


@pytest.mark.parametrize("key", ["threads", "kernel_threads"])
def test_restart_dir_restores_a_multithreaded_process(guest, key):
    """cp threads.img /ckpt/restart/, for crfs's image and the module's: the status says
    running, then exited 3, and its stdout file has all three threads counting on."""
    steps = _report(guest)["steps"]
    fuse = _fuse(steps, key)
    run = steps["threads"] if key == "threads" else steps["threads"]["kernel"]
    _threads_continue(run["checkpoint"]["before"], fuse["lines"])


def test_refused_thread_fails_the_whole_process(guest):
    """Task 1 (the first worker) says 32-bit: its thread's call is refused with the reason
    (naming the task), which cancels the others: the process ends before the point of
    no return, without output, and nothing of it is left."""
    refused = _report(guest)["steps"]["threads"]["refused"]
    assert refused["errno"] == "EOPNOTSUPP", refused
    assert refused["msg"].startswith("task 1: not a 64-bit task"), refused
    assert refused["after"][-1].startswith("crfs-restart: restart: "), refused
    assert refused["survivors"] == [], refused


def test_thread_calls_that_do_not_meet_are_refused(guest):
    """Threads of one process that do not all come, or come wrong, are refused before the
    point of no return: the leader's task from a thread; one task claimed twice; a thread
    with another image file; the leader refused (its threads get ECANCELED); the leader
    alone (its threads never call: ETIMEDOUT after the group_timeout parameter)."""
    errors = _report(guest)["steps"]["thread_group_errors"]
    [leader] = errors["leader_in_a_thread"][:1]
    assert leader["errno"] == "EBUSY" and "the caller's main thread" in leader["msg"], leader
    twice = sorted(errors["task_claimed_twice"][:2], key=lambda r: r["errno"])
    assert [r["errno"] for r in twice] == ["EBUSY", "ETIMEDOUT"], twice
    assert "restored by another thread" in twice[0]["msg"]
    assert "did not all call RESTART" in twice[1]["msg"]
    thread, other = errors["another_image"]
    assert thread["errno"] == "ETIMEDOUT", thread
    assert other["errno"] == "EINVAL" and "another image" in other["msg"], other
    *threads, leader = errors["leader_refused"]
    assert leader["errno"] == "EOPNOTSUPP" and "image vdso at 0x" in leader["msg"], leader
    for thread in threads:
        assert thread["errno"] == "ECANCELED" and "another thread failed" in thread["msg"]
    [alone] = errors["threads_missing"]
    assert alone["errno"] == "ETIMEDOUT", alone
    assert "did not all call RESTART" in alone["msg"]


def test_thread_calls_of_another_process_do_not_meet(guest):
    """The group is keyed by the caller's thread group: two unrelated processes whose
    threads RESTART the same task of the same image file each wait in their own group
    (ETIMEDOUT, their leaders never call); neither claims the other's task (EBUSY)."""
    errors = _report(guest)["steps"]["thread_group_errors"]["another_process"]
    for calls in errors:
        thread = calls[0]
        assert thread["errno"] == "ETIMEDOUT", errors
        assert "did not all call RESTART" in thread["msg"], errors


# --------------------------------------------------------------------------- checkpoint


def test_module_checkpoint_is_read_by_crfs_and_restarts(guest):
    """restore_target, `crfs checkpoint --via kernel --leave-stopped`: the module's image
    has the process's VMAs (as /proc/<pid>/maps lists them) and its saved pages equal
    /proc/<pid>/mem; killed, then restarted by the module, its output continues."""
    run = _report(guest)["steps"]["kernel_checkpoint"]
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    compare = run["compare"]
    assert compare["task"]["nr_tasks"] == 1 and compare["task"]["has_fpu"], compare
    assert compare["task"]["comm"] == "restore_target"
    assert compare["maps_equal"], compare
    assert compare["mismatched"] == [], compare
    # the 64 KiB heap pattern, the written page of the private file mapping, the shared page
    assert compare["kinds"].get("anon", 0) >= 16, compare
    assert compare["kinds"].get("file", 0) >= 1, compare
    assert compare["kinds"].get("shm-anon", 0) == 1, compare
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    _continues(run["before"], restart["after"], restart["exit"])


def test_restart_while_the_pid_is_taken_gets_a_new_pid(guest):
    """The module's image restarted while the checkpointed process still exists (stopped):
    its pid is taken, so the restarter falls back to a new one; the program runs on."""
    run = _report(guest)["steps"]["kernel_checkpoint"]
    taken = run["pid_taken"]
    assert (taken["errno"], taken["stage"]) == (0, "restart"), taken
    _continues(run["before"][:run["ticks_at_checkpoint"]], taken["after"], taken["exit"],
               same_pid=False)


def test_module_checkpoint_matches_the_userspace_writer(guest):
    """The same stopped process written by the userspace checkpointer: the same records in
    the same order, the same VMAs with the same kinds and the same saved pages."""
    same = _report(guest)["steps"]["kernel_checkpoint"]["same_as_python"]
    assert same["records_equal"] and same["vmas_equal"] and same["state_equal"], same
    assert same["files_equal"], same["files"]


def test_module_checkpoint_of_a_tree_matches_the_userspace_writer(guest):
    """tree_target (a parent and its forked child), `crfs checkpoint --tree --via kernel
    --leave-stopped`: the module's image has the same records in the same order as the
    userspace writer's of the same stopped tree, the same tasks (parent first, the child's
    ppid the parent) with an mm each, the same VMAs, kinds and saved pages."""
    run = _report(guest)["steps"]["kernel_checkpoint_tree"]
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    assert "same_as_python" in run, run
    same = run["same_as_python"]
    assert same["records_equal"] and same["tasks_equal"] and same["vmas_equal"], same
    assert same["state_equal"] and same["files_equal"], same
    parent, child = run["pids"]
    tasks = same["tasks"]      # [pid, tgid, ppid, comm, index of its mm]
    assert [(t[0], t[1], t[4]) for t in tasks] == [(parent, parent, 0), (child, child, 1)]
    assert tasks[1][2] == parent


def test_module_checkpoint_of_a_tree_restarts(guest):
    """The module's image of the tree, the tree killed, restarted by the module: both
    count on from where they were to their limit, with their pids, the child under the
    restored parent, which reaps it; nothing of the tree is left."""
    run = _report(guest)["steps"]["kernel_checkpoint_tree"]
    assert "restart" in run, run
    assert run["limit"] == RESTORE_LIMIT
    _tree_restarted(run["before"], run["restart"])


# --------------------------------------------------------------------------- the front
# Root's compiled `crfs` (kmod/crfs-front.c), step "front" (tests/guest_front.py): run with
# no Python CLI on PATH, a command it handed on would fail with status 2.

def _front(guest, part):
    run = _report(guest)["steps"]["front"][part]
    assert "error" not in run, run["error"]
    return run


NO_CLI = "crfs: no Python crfs on PATH to run this command (pip install crfs)\n"


def test_front_checkpoints_through_the_module_itself(guest):
    """`crfs checkpoint PID -o DIR//./stopped.img --leave-stopped --stop` by the front alone: the
    path printed as the CLI prints it, no temporary file left, the process stopped and
    untraced; the image holds the process's maps and pages and equals the CLI's `--via
    kernel` image of it; the process killed, the image restarts and counts on."""
    run = _front(guest, "stopped")
    ck = run["checkpoint"]
    assert (ck["rc"], ck["stdout"], ck["stderr"]) == (0, run["image"] + "\n", ""), ck
    assert run["after"] == ["T", 0]
    assert run["temp_files"] == []
    compare = run["compare"]
    assert compare["maps_equal"] and compare["pages"] >= 16 and compare["mismatched"] == []
    assert run["cli"]["rc"] == 0 and run["same_as_cli"] is True, run["cli"]
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    _continues(run["before"], restart["after"], restart["exit"])


def test_front_checkpoints_a_tree_into_the_store_and_kills_it(guest):
    """`crfs checkpoint PID --tree --kill --store STORE` by the front alone: the image named
    <comm>-<pid>-<UTC time>.ckpt as the CLI names it, the only file in the store; when the
    command returns the child's pid is free and the parent is a zombie waiting for its
    parent (the step); the stored image restarts the tree, which counts on."""
    run = _front(guest, "tree")
    ck = run["checkpoint"]
    parent, child = run["pids"]
    assert ck["rc"] == 0 and ck["stderr"] == "", ck
    path = ck["stdout"].rstrip("\n")
    pattern = rf"{re.escape(run['store'])}/tree_target-m64-{parent}-\d{{8}}T\d{{6}}Z\.ckpt"
    assert re.fullmatch(pattern, path), path
    assert run["listing"] == [os.path.basename(path)]
    assert run["states"] == [["Z", 0], None]
    _tree_restarted(run["before"], run["restart"])


def test_front_never_replaces_an_image_in_the_store(guest):
    """Images already named <comm>-<pid>-<time>.ckpt for each of the next 10 seconds: the
    front's image is linked in as <that name>-1.ckpt, and the others are left as they were."""
    run = _front(guest, "named")
    ck = run["checkpoint"]
    assert ck["rc"] == 0 and ck["stderr"] == "", ck
    name = os.path.basename(ck["stdout"].rstrip("\n"))
    assert name.endswith("-1.ckpt") and name[:-len("-1.ckpt")] + ".ckpt" in run["taken"]
    assert run["listing"] == sorted(run["taken"] + [name])
    assert run["untouched"]


@pytest.mark.parametrize("how", ["ptrace", "cr"])
def test_front_hands_on_what_it_does_not_write(guest, how):
    """`--via ptrace` and `--format cr` go to the Python CLI with the same argv: without
    one on PATH the front says so (status 2) and the process runs on untraced; with one,
    the CLI writes the image in that format."""
    run = _front(guest, "handed_on")[how]
    assert (run["no_cli"]["rc"], run["no_cli"]["stderr"]) == (2, NO_CLI), run["no_cli"]
    assert run["after_no_cli"][0] in "RS" and run["after_no_cli"][1] == 0
    assert run["cli"]["rc"] == 0, run["cli"]
    assert run["format"] == {"ptrace": "ckpt", "cr": "cr"}[how]
    assert run["after_cli"][0] in "RS" and run["after_cli"][1] == 0


def test_front_runs_other_commands_with_the_python_cli(guest):
    """`crfs info IMAGE` through the front prints what `python3 -m crfs info` prints."""
    run = _front(guest, "handed_on")["info"]
    assert run["front"]["rc"] == 0 and run["front"]["stdout"] == run["python"] != ""


def test_front_lets_a_refused_process_go_and_hands_it_on(guest):
    """A 32-bit process, which crfs.ko refuses to write: the front lets it go, removes its
    temporary file and hands the command on; with no CLI on PATH the process runs on,
    untraced, and there is no image; with the CLI, `--via auto` falls back to the
    userspace writer and the image verifies."""
    run = _front(guest, "refused")
    assert (run["no_cli"]["rc"], run["no_cli"]["stderr"]) == (2, NO_CLI), run["no_cli"]
    assert run["after_no_cli"][0] in "RS" and run["after_no_cli"][1] == 0
    assert run["temp_files"] == [] and not run["image_after_no_cli"]
    assert run["cli"]["rc"] == 0 and run["verify"] == 0, run["cli"]
    assert run["after_cli"][0] in "RS" and run["after_cli"][1] == 0


@pytest.mark.parametrize("who", ["front", "cli"])
def test_front_and_cli_summarize_the_modules_checkpoint_on_a_terminal(guest, who):
    """stderr on a terminal, 256 MiB written by crfs.ko: one summary line, the same from the
    front and from the CLI's `--via kernel`; a write that took over a second and a half
    showed the MiB written (and the rate) before it."""
    run = _front(guest, "terminal")[who]
    assert run["rc"] == 0 and run["stdout"].endswith(".img\n"), run
    summary = re.search(rf"(?m)^checkpoint {run['pid']}: written by crfs\.ko, stopped \d+ "
                        r"ms, 2\d\d\.\d MiB image, (\d+\.\d\d) s\r?$", run["tty"])
    assert summary, run["tty"]
    if float(summary[1]) > 1.5:     # progress: a second after the start, every 0.2 s
        assert re.search(rf"\rcheckpoint {run['pid']}: \d+ MiB written, \d+ MiB/s",
                         run["tty"]), run["tty"]


def test_front_is_quiet_with_q(guest):
    run = _front(guest, "terminal")["quiet"]
    assert run["rc"] == 0 and run["tty"] == "", run


def test_front_gives_another_uid_nothing(guest):
    """uid 65534 running the front on root's process: /dev/crfs (0600) does not open for it,
    so the front stops nothing and hands the command on (status 2 with no CLI on PATH);
    root's process runs on untraced, and no image or temporary file is left."""
    run = _front(guest, "nobody")
    assert run["device_mode"] == "0o600"
    assert (run["rc"], run["stdout"], run["stderr"]) == (2, "", NO_CLI), run
    assert run["after"][0] in "RS" and run["after"][1] == 0
    assert run["left"] == []


def test_front_interrupted_lets_go_and_leaves_nothing(guest):
    """SIGTERM to the front while crfs.ko writes: it dies of SIGTERM once the write ends,
    having let the process go (running, untraced) and removed its temporary file; no
    image, nothing printed, nothing handed on."""
    run = _front(guest, "interrupted")
    assert run["ready"].startswith("ready") and run["growing"], run
    assert (run["rc"], run["stdout"], run["stderr"]) == (-signal.SIGTERM, "", ""), run
    assert run["temp_files"] == [] and not run["image"]
    assert run["after"][0] in "RS" and run["after"][1] == 0


@pytest.mark.parametrize("who", ["front", "cli"])
def test_module_takes_a_snapshot_and_the_program_runs_on(guest, who):
    """ckpt_rewrite rewriting its pattern as the front (or the CLI's `--via kernel`)
    checkpoints it (the default: a snapshot through CRFS_IOC_SNAPSHOT): the summary says
    so and the program was stopped for less than the whole checkpoint; the image holds one
    instant of the pattern; it verifies and says its memory came from a copy-on-write
    snapshot; the program kept writing, and shows no trace: the same children (no zombie)
    and fds, no SIGCHLD."""
    run = _front(guest, "snapshot")[who]
    tty = run["run"]
    assert tty["rc"] == 0 and tty["stdout"] == run["image"] + "\n", tty
    summary = re.search(rf"(?m)^checkpoint {run['pid']}: snapshot, written by crfs\.ko, "
                        r"stopped (\d+) ms, (\d+\.\d) MiB image, (\d+\.\d\d) s\r?$",
                        tty["tty"])
    assert summary, tty["tty"]
    assert float(summary[2]) >= 32 and int(summary[1]) / 1000 < float(summary[3]), tty["tty"]
    assert run["problems"] == [], run["problems"]
    assert run["verify"]["rc"] == 0, run["verify"]
    assert "copy-on-write snapshot" in run["verify"]["stdout"], run["verify"]
    assert run["progress_now"] > run["image_progress"], run
    assert run["after"] == run["before"] and run["sigchld"] == 0, run
    assert run["state"][1] == 0, run["state"]


def test_module_checkpoint_writes_every_thread(guest):
    """A two-threaded python3 with both threads stopped by the caller (crfs's freezer):
    the module writes both, the leader first; crfs reads back 2 tasks of one tgid sharing
    one mm, each with its registers and FPU state."""
    result = _report(guest)["steps"]["checkpoint_refusals"]["threads"]
    assert result["errno"] == 0, result
    leader, thread = result["tids"]
    assert [t[:2] for t in result["tasks"]] == [[leader, leader], [thread, leader]], result
    assert result["mms"] == 1 and result["registers"] == [True, True], result


def test_module_checkpoint_of_threads_matches_the_userspace_writer(guest):
    """tests/c/ckpt_threads.c with 3 counting threads, all stopped by the caller: the
    module writes 4 tasks (the leader, then the threads by tid) and one mm, with the
    same records in the same order, the same tasks and the same VMAs and saved pages as
    the userspace writer's image of the same stopped process."""
    result = _report(guest)["steps"]["checkpoint_refusals"]["threads_c"]
    assert result["errno"] == 0, result
    tids = result["tids"]
    assert len(tids) == 4 and tids[1:] == sorted(tids[1:]), result
    assert [t[:2] for t in result["tasks"]] == [[tid, tids[0]] for tid in tids], result
    assert result["mms"] == 1 and result["registers"] == [True] * 4, result
    same = result["same_as_python"]
    assert same["records_equal"] and same["tasks_equal"] and same["vmas_equal"], same
    assert same["state_equal"], same


def test_module_checkpoint_names_the_thread_not_stopped(guest):
    """Only the leader of a two-threaded process seized and stopped: EPERM, and the
    reason names the thread that could still run."""
    result = _report(guest)["steps"]["checkpoint_refusals"]["thread_not_stopped"]
    leader, thread = result["tids"]
    assert result["errno"] == "EPERM", result
    assert result["msg"] == (f"thread {thread} of pid {leader} is not ptrace-stopped by "
                             "the caller"), result


def test_module_checkpoint_writes_at_the_fd_position(guest):
    result = _report(guest)["steps"]["checkpoint_refusals"]["at_position"]
    assert result["errno"] == 0, result
    assert result["magic"] == 0x00feed0cc0a2d200       # CKPT_HDR_HEADER at offset 5
    assert result["offset"] == result["size"] > 5 + 4096


# who asks -> errno of CRFS_IOC_CHECKPOINT
CHECKPOINT_REFUSALS = {
    "nobody_untraced_own": "EPERM",      # its own process, not traced
    "nobody_root_process": "EPERM",      # root's process
    "root_untraced": "EPERM",            # even root must be the ptracer
    "root_traced_running": "EPERM",      # seized but not in a ptrace stop
    "thread_not_stopped": "EPERM",       # its leader stopped, another thread not
    "no_such_pid": "ESRCH",
    "pid_zero": "ESRCH",
    "read_only_fd": "EBADF",
    "closed_fd": "EBADF",
    "pipe_fd": EINVAL,
    "flags_set": EINVAL,                 # a flag other than CRFS_CHECKPOINT_TREE
    "tree_untraced": "EPERM",            # CRFS_CHECKPOINT_TREE, the root not stopped
    "reserved_set": EINVAL,
    "bad_pointer": "EFAULT",
    "max_pages_4": "EFBIG",              # the module loaded with max_pages=4 for the call
    "zombie": "ESRCH",                   # exited, not reaped: no task to write
}


@pytest.mark.parametrize("name", CHECKPOINT_REFUSALS)
def test_checkpoint_refusals(guest, name):
    result = _report(guest)["steps"]["checkpoint_refusals"][name]
    assert result["errno"] == CHECKPOINT_REFUSALS[name], result


SNAPSHOT_REFUSALS = {   # SNAPSHOT of a stopped parent whose child stands for its clone
    "clone_untraced": ("EPERM", "clone {child} is not ptrace-stopped by the caller"),
    "clone_missing": ("ESRCH", "no clone 4194304 of pid {parent}"),
    "clone_itself": ("EINVAL", "{parent} is not a clone of pid {parent}"),
    "clone_not_child": ("EINVAL", "{other} is not a clone of pid {parent}"),
    "clone_twice": ("EINVAL", "pid {other} or clone {child} given twice"),
    "not_written": ("EINVAL", "pid {parent} has a clone but is not written"),
    "too_many": ("EINVAL", ""),
    "bad_pointer": ("EFAULT", ""),
    "reserved_set": ("EINVAL", ""),
    "resume_not_eventfd": ("EBADF", ""),
    "spool_read_only": ("EBADF", ""),
    "spool_dev_null": ("EINVAL", "the spool is not a regular file"),
    "spool_closed": ("EBADF", ""),
}


@pytest.mark.parametrize("name", SNAPSHOT_REFUSALS)
def test_snapshot_refusals(guest, name):
    """Each refusal says why (err_msg) where there is a why, and never tells the caller
    the processes may run on."""
    steps = _report(guest)["steps"]["checkpoint_refusals"]["snapshot"]
    result = steps[name]
    err, msg = SNAPSHOT_REFUSALS[name]
    if name == "too_many":
        msg = "more than 1024 clones"
    assert result["errno"] == err, result
    assert result["msg"] == msg.format(**steps["pids"]), result
    assert result["resumed"] == 0, result


def test_snapshot_accepts_a_stopped_child_as_the_clone(guest):
    """The module cannot tell a fork made by crfs from one the program made: any stopped
    child of a thread of the process will do. The image verifies and says its memory came
    from a snapshot; the caller was told once that the processes could run on. With no
    clone it is CHECKPOINT's image, not marked."""
    steps = _report(guest)["steps"]["checkpoint_refusals"]["snapshot"]
    accepted = steps["accepted"]
    assert (accepted["errno"], accepted["resumed"]) == (0, 1), accepted
    assert "copy-on-write snapshot" in accepted["verify"], accepted["verify"]
    assert (steps["no_clone"]["errno"], steps["no_clone"]["resumed"]) == (0, 1)


def test_snapshot_clone_of_another_uid_must_be_dumpable(guest):
    """nobody, tracer of its child and grandchild: SNAPSHOT with the grandchild as the
    clone is accepted while it is dumpable, refused (EPERM, said why) once it set
    PR_SET_DUMPABLE 0, as ptrace would refuse to read it."""
    steps = _report(guest)["steps"]["checkpoint_refusals"]["snapshot"]
    assert steps["nobody_family"]["errno"] == 0, steps["nobody_family"]
    refused = steps["nobody_family_undumpable"]
    assert refused["errno"] == "EPERM" and "is not dumpable" in refused["msg"], refused
    assert refused["resumed"] == 0


def test_unprivileged_tracer_may_checkpoint_its_tracee(guest):
    """Authorization is ptrace's: nobody, having seized and stopped its own process, may
    checkpoint it (with /dev/crfs opened for it)."""
    steps = _report(guest)["steps"]["checkpoint_refusals"]
    if steps["yama_ptrace_scope"]:
        pytest.skip(f"yama ptrace_scope {steps['yama_ptrace_scope']}")
    assert steps["nobody_traced_own"]["errno"] == 0, steps["nobody_traced_own"]


def test_exited_process_is_no_process(guest):
    """A child that exited and is not reaped: nothing is collected, ESRCH (the path a root
    killed while its tasks are collected takes), never a NULL task 0."""
    result = _report(guest)["steps"]["checkpoint_refusals"]["zombie"]
    assert result["errno"] == "ESRCH" and "has exited" in result["msg"], result


def test_max_pages_bounds_a_checkpoint(guest):
    result = _report(guest)["steps"]["checkpoint_refusals"]["max_pages_4"]
    assert result["errno"] == "EFBIG" and "more than 4 pages" in result["msg"], result


def test_undumpable_tracee_is_refused_to_an_unprivileged_tracer(guest):
    """As ptrace_access_vm() requires: nobody seized its own child while it was dumpable;
    the child then set PR_SET_DUMPABLE 0: its checkpoint is refused (EPERM, the reason
    says why). The same child left dumpable is written."""
    steps = _report(guest)["steps"]["checkpoint_refusals"]
    refused = steps["nobody_own_child_undumpable"]
    assert refused["errno"] == "EPERM", refused
    assert "is not dumpable" in refused["msg"], refused
    if steps["yama_ptrace_scope"] and steps["yama_ptrace_scope"] > 1:
        pytest.skip(f"yama ptrace_scope {steps['yama_ptrace_scope']}")
    assert steps["nobody_own_child"]["errno"] == 0, steps["nobody_own_child"]


def test_unprivileged_restart_of_a_root_image_keeps_the_callers_uid(guest):
    """An image of a root process, without credentials (its TASK_CREDS made unknown),
    restarted by nobody: the restored process runs (its count continues) with nobody's
    uid, not root's."""
    steps = _report(guest)["steps"]
    result = steps["checkpoint_refusals"]["nobody_restart"]
    assert result["report"] == 0, result       # no failure report: it was restored
    assert result["uid"] == ["65534"] * 4, result
    before = steps["kernel_checkpoint"]["before"]
    after = _ticks(result["after"])
    assert after and after[0][0] == _ticks(before)[-1][0] + 1, result


def _creds(guest):
    result = _report(guest)["steps"]["restart_creds"]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert result["records"] == [114, 116, 117], result     # CRED, GROUPINFO, TASK_CREDS
    return result


@pytest.mark.parametrize("by", ["by_root", "by_nobody"])
def test_restart_gives_the_image_its_credentials(guest, by):
    """A program of nobody's (in group 100), checkpointed by crfs, runs as nobody in group
    100 again, whoever of root and nobody restarts it: no more privilege than it had (no
    capabilities)."""
    result = _creds(guest)
    original, restored = result["original"], result[by]
    assert restored["errno"] == "restored", restored
    status = restored["status"]
    assert status["Uid"] == ["65534"] * 4 and status["Gid"] == ["65534"] * 4, restored
    assert original["Groups"] == ["100"] and status["Groups"] == ["100"], restored
    assert status["CapEff"] == status["CapPrm"] == ["0000000000000000"], restored
    assert status["NoNewPrivs"] == original["NoNewPrivs"], restored
    assert _ticks(restored["after"]), restored


@pytest.mark.parametrize("by, message", [
    ("by_other", "image uid 65534 is not the caller's"),
    ("by_nobody_not_in_group", "image group 100 is not one of the caller's"),
    ("uid0_by_nobody", "image uid 0 is not the caller's")])
def test_restart_refuses_credentials_the_caller_may_not_grant(guest, by, message):
    result = _creds(guest)[by]
    assert result["errno"] == "EPERM" and result["msg"] == message, result
    assert "status" not in result, result


@pytest.mark.parametrize("label", ["groups_huge", "groups_len"])
def test_malformed_groupinfo_is_refused(guest, label):
    result = _creds(guest)[label]
    assert result["errno"] == "EINVAL" and result["type"] == 116, result
    assert result["msg"] in ("GROUPINFO: ngroups 4294967295 (at most 65536) in len 20",
                             "GROUPINFO: ngroups 2 (at most 65536) in len 20"), result


def test_no_kmemleak_reports_for_crfs(guest):
    leak = _report(guest)["steps"]["kmemleak"]
    if not leak["available"]:
        pytest.skip("the guest kernel has no kmemleak (Debian: CONFIG_DEBUG_KMEMLEAK off)")
    assert leak["crfs"] == [], leak


def test_no_restored_program_is_left_running(guest):
    """Every program the guest run restored has ended by itself (none hangs)."""
    assert _report(guest)["steps"]["stragglers"] == []


def test_module_unloads_and_dmesg_is_clean(guest):
    steps = _report(guest)["steps"]
    assert steps["rmmod"]["rc"] == 0, steps["rmmod"]["stderr"]
    assert steps["rmmod"]["device_gone"]
    assert steps["dmesg_problems"] == []


def test_errno_names_are_stable():
    """The report uses errno names; the ones the tests expect exist on this platform."""
    for name in ("EINVAL", "ENOEXEC", "EOPNOTSUPP", "EBADF", "EFAULT", "EFBIG", "ENOTTY"):
        assert hasattr(errno, name)


# --------------------------------------------------------------------------- file table

def _files(guest):
    files = _report(guest)["steps"]["files"]
    assert files["checkpoint"]["rc"] == 0, files["checkpoint"]["stderr"]
    return files


def test_restart_restores_the_fd_table(guest):
    """files_target (tests/c/files_target.c) checkpointed by `crfs checkpoint`, restarted
    by crfs-restart: /proc/PID/fd and fdinfo of the restored process say the same files,
    flags (close-on-exec included) and positions; the pipe is a new pipe with both ends;
    fd 0, a pipe whose writer was not checkpointed, is crfs-restart's stdin, handed in."""
    files = _files(guest)
    assert files["restart"]["errno"] == 0, files["restart"]
    before, after = files["before"], files["after"]
    assert set(after) == set(before)
    for fd in ("5", "6", "10", "20"):          # dir, /dev/null, cloexec file, /dev/zero
        assert after[fd] == before[fd], fd
    for fd in ("1", "2", "3"):                 # written to since: same file and flags
        assert after[fd][:2] == before[fd][:2], fd
    assert int(before["3"][1], 8) & os.O_APPEND
    for fd in ("4", "9"):                      # position 1234 (1235 while the program reads)
        assert after[fd][:2] == before[fd][:2] and after[fd][2] in ("1234", "1235"), fd
    assert before["7"][0].startswith("pipe:[") and before["7"][0] == before["8"][0]
    assert after["7"][0].startswith("pipe:[") and after["7"][0] == after["8"][0]
    assert after["7"][0] != before["7"][0]
    assert [after[fd][1] for fd in ("7", "8")] == [before[fd][1] for fd in ("7", "8")]
    assert before["0"][0].startswith("pipe:[") and after["0"][0] == "/dev/null"


def test_restored_program_finds_its_files(guest):
    """The program's own checks after the restart: every fd as it left it (flags, the
    shared offset of fd 4 and its dup, the directory, the devices, close-on-exec, fds
    11-19 closed), the pipe's bytes still buffered, its stdout (a file, not the
    restarter's) and its O_APPEND log written on, every tick once."""
    files = _files(guest)
    assert files["exit"] == "exited 3", files["exit"]
    before, lines = files["lines_before"], files["lines"]
    assert lines[:len(before)] == before
    ticks = [line for line in lines if line.startswith("tick ")]
    assert all(line.endswith("files=ok") for line in ticks), ticks
    numbers = [int(line.split()[1]) for line in ticks]
    assert numbers == list(range(1, len(numbers) + 1)) and len(ticks) > len(before) + 2
    assert lines[-1] == "pipe=ok"
    assert files["log"] == ticks               # O_APPEND: the log has every tick once


FILE_REFUSALS = {
    "strict_half_pipe": ("EOPNOTSUPP", "fd 0: a pipe whose other end is not in the process"),
    "vanished": ("ENOENT", "fd 4: /tmp/crfs-files/files.data: No such file"),
    "not_regular": ("EINVAL", "fd 4: /tmp/crfs-files/files.data is not a regular file"),
    "cloexec_2": ("EINVAL", "fd_close_on_exec 2"),
    "fd_negative": ("EINVAL", "fd -1"),
    "fd_twice": ("EINVAL", "fd 1 twice"),
    "objref_unknown": ("EINVAL", "fd_objref 9999 is not a file seen before"),
    "nfds_huge": ("EINVAL", "fdt_nfds 1073741824"),
    "nfds_negative": ("EINVAL", "fdt_nfds -1"),
    "o_creat": ("EINVAL", "O_CREAT, O_EXCL, O_TRUNC or O_NOCTTY"),
    "o_trunc": ("EINVAL", "O_CREAT, O_EXCL, O_TRUNC or O_NOCTTY"),
}


@pytest.mark.parametrize("name", FILE_REFUSALS)
def test_file_table_refusals_say_why(guest, name):
    """Malformed file tables (errno EINVAL, the record named), a file that vanished or
    became a FIFO (its path named), an fd that cannot be reopened and is not handed in
    (-S): the restart fails with the restarter intact."""
    code, reason = FILE_REFUSALS[name]
    got = _files(guest)["refused"][name]
    assert got["errno"] == code and reason in got["msg"], got


def test_restart_shares_pipes_and_files_between_processes(guest):
    """files_tree_target, `crfs checkpoint --tree`, crfs-restart: the child's write end
    and the parent's read end are one pipe again, with the lines the parent had not read
    yet (no line lost or repeated), and the log file both write at one shared offset
    (no line overwritten)."""
    tree = _report(guest)["steps"]["files_tree"]
    assert tree["checkpoint"]["rc"] == 0, tree["checkpoint"]["stderr"]
    assert tree["restart"]["errno"] == 0, tree["restart"]
    after = tree["after"]
    assert after["parent"]["7"][0].startswith("pipe:[")
    assert after["parent"]["7"][0] == after["child"]["8"][0]
    assert after["parent"]["7"][0] != tree["before"]["parent"]["7"][0]
    assert after["parent"]["3"][0] == after["child"]["3"][0]
    assert tree["exit"] == "exited 3", tree["exit"]
    lines = tree["lines"]
    assert lines[:len(tree["lines_before"])] == tree["lines_before"]
    assert lines[-1] == "eof"
    got = [int(line.split()[-1]) for line in lines[:-1]]
    assert got == list(range(1, len(got) + 1)) and len(got) > len(tree["lines_before"])
    log = tree["log"]
    assert sorted(log) == sorted([f"child {n}" for n in got] + [f"parent {n}" for n in got])
# --------------------------------------------------------------------------- signals, limits, fs

SIG_DIR = "/tmp/crfs-kck/sigdir"
# SIGTERM and SIGUSR1 caught, SIGUSR2 blocked and pending (private and shared)
SIG_STATUS = {"SigCgt": "0000000000004200", "SigBlk": "0000000000000800",
              "SigPnd": "0000000000000800", "ShdPnd": "0000000000000800"}


def _signals(guest):
    result = _report(guest)["steps"]["signals"]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    # FS, SIGHAND, SIGNAL, SIGNAL_TASK, SIGPENDING, SIGALTSTACK, FS_EXT
    assert result["records"] == [451, 601, 602, 603, 604, 8001, 8002], result
    return result


@pytest.mark.parametrize("by", ["by_root", "by_nobody", "limit_by_root"])
def test_restart_restores_signals_limits_and_cwd(guest, by):
    """tests/c/sig_target.c run as nobody, checkpointed by `crfs checkpoint`, restarted by
    root, by nobody, and by root with a lower RLIMIT_NOFILE than the image's (root may
    raise it): /proc shows the handlers, blocked and pending signals, the open-files limit
    and the cwd it had; on SIGUSR1 its handler runs on its altstack and it sees its umask,
    limit, itimer interval, cwd and mask; on SIGTERM its handler makes it exit 0."""
    result = _signals(guest)
    original, restored = result["original"], result[by]
    assert restored["errno"] == "restored", restored
    for key, value in SIG_STATUS.items():
        assert original["status"][key] == value, original
    seen = restored["observed"]
    assert seen["status"] == original["status"], restored
    assert original["nofile"][0] == "100" and seen["nofile"] == original["nofile"], restored
    assert seen["cwd"] == original["cwd"] == SIG_DIR, restored
    assert restored["usr1"] == ("usr1 onstack=1 umask=027 nofile=100 itimer=7 "
                                f"cwd={SIG_DIR} blocked_usr2=1"), restored
    assert restored["term"] == "term" and restored["exit"] == 0, restored


def test_restart_refuses_a_limit_above_the_unprivileged_callers(guest):
    result = _signals(guest)
    hard = result["original"]["nofile"][1]
    refused = result["limit_by_nobody"]
    assert refused["errno"] == "EPERM", refused
    assert refused["msg"] == f"RLIMIT_NOFILE hard limit {hard} is above the caller's 512", refused


def test_restart_refuses_another_root_without_cap_sys_chroot(guest):
    refused = _signals(guest)["root_by_nobody"]
    assert refused["errno"] == "EPERM", refused
    assert refused["msg"] == ("root /tmp is not the caller's root, and the caller lacks "
                              "CAP_SYS_CHROOT"), refused


@pytest.mark.parametrize("label, code, rtype, message", [
    ("handler_in_kernel", "EINVAL", 601,
     "SIGHAND: signal 15: handler 0xffffffff81000000 is not a user address"),
    ("blocked_sigkill", "EINVAL", 603, "SIGNAL_TASK: SIGKILL or SIGSTOP blocked"),
    ("pending_count_lies", "EINVAL", 604, "SIGPENDING: nr_pending 2 (at most 1024) in len 72"),
    ("altstack_in_kernel", "EINVAL", 8001,
     "SIGALTSTACK: stack 0xffffffff81000000 + 65536 is not in user space or below MINSIGSTKSZ"),
    ("cwd_relative", "EINVAL", 303, "FS: path not absolute or not one NUL-terminated string"),
    ("cwd_not_a_directory", "ENOTDIR", None, "cwd /tmp/crfs-kck/sigfile is not a directory"),
])
def test_malformed_signal_and_fs_records_are_refused(guest, label, code, rtype, message):
    """One record of the image made wrong: the restart is refused with its errno and reason
    (the record's type for what copy-in rejects), the restarter intact to report it."""
    refused = _signals(guest)["malformed"][label]
    assert refused["errno"] == code and refused["msg"] == message, refused
    if rtype is not None:
        assert refused["type"] == rtype, refused


def test_module_checkpoint_of_signal_state_matches_and_restores(guest):
    """sig_target checkpointed by the module, then by crfs: the module writes FS, SIGHAND,
    SIGNAL, SIGPENDING, SIGNAL_TASK, SIGALTSTACK and FS_EXT with the same handlers, masks,
    altstack, limits, cwd, root and umask (the memory differs: crfs's injected system
    calls ran in between); the module's image restarted brings back what /proc showed,
    and the program's handlers, altstack, umask, limit and itimer."""
    run = _signals(guest)["kernel"]
    assert run["checkpoint"]["rc"] == 0 and run["python"]["rc"] == 0, run
    assert run["records"] == [451, 601, 602, 603, 604, 8001, 8002], run
    same = run["same_as_python"]
    assert same["state_equal"], same
    restored = run["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["observed"]["status"] == run["original"]["status"], restored
    assert restored["observed"]["nofile"] == run["original"]["nofile"], restored
    assert restored["usr1"] == ("usr1 onstack=1 umask=027 nofile=100 itimer=7 "
                                f"cwd={SIG_DIR} blocked_usr2=1"), restored
    assert restored["term"] == "term" and restored["exit"] == 0, restored
# --------------------------------------------------------------------------- mapped files
# Step file_id (tests/guest_file_id.py): CRFS_HDR_FILE_ID written by both checkpointers and
# checked by RESTART.

FID_DATA = "/tmp/crfs-fid/fid.data"


def _fid(guest):
    return _report(guest)["steps"]["file_id"]


def test_both_checkpointers_record_the_mapped_file(guest):
    """The module and the userspace writer record the same identity for the data file:
    size and mtime as stat says (dev and inode are the mapped inode's, which overlayfs
    may show under other numbers)."""
    fid = _fid(guest)
    assert fid["kernel_rc"] == 0, fid["kernel_stderr"]
    assert len(fid["kernel_ids"]) == 1 and fid["kernel_ids"] == fid["python_ids"], fid
    recorded, stat = fid["kernel_ids"][0], fid["stat"]
    assert (recorded["size"], recorded["mtime_ns"]) == (stat["size"], stat["mtime_ns"])
    same = fid["same_as_python"]     # FILE_IDs in the same places, none for shm memory
    assert same["records_equal"] and same["vmas_equal"], same


def test_unchanged_mapped_file_restarts(guest):
    """Restored, it counts on (killed after 10 s)."""
    run = _fid(guest)["unchanged"]
    assert (run["errno"], run["stage"]) == (0, "restored"), run
    assert _ticks(run["after"][:3]), run


@pytest.mark.parametrize("change, what", [("mtime", "mtime"), ("mtime_kernel_image", "mtime"),
                                          ("size", "size"), ("inode", "inode")])
def test_changed_mapped_file_refuses_the_restart(guest, change, what):
    """Touched, grown, or replaced by a copy with the same bytes and mtime: ESTALE, the
    file named, the caller intact."""
    result = _fid(guest)[change]
    assert (result["errno"], result["stage"]) == ("ESTALE", "restart"), result
    assert result["msg"] == f"{FID_DATA} changed since the checkpoint ({what})", result


def test_mapped_file_put_back_restarts(guest):
    """The same inode, size and mtime again: the module's own image restarts."""
    run = _fid(guest)["put_back"]
    assert (run["errno"], run["stage"]) == (0, "restored"), run
    assert _ticks(run["after"][:3]), run



# --------------------------------------------------------------------------- module creds
# Step kernel_creds (tests/guest_ckpt_creds.py): CHECKPOINT writes CRED, GROUPINFO, USER
# and TASK_CREDS (kmod/crfs_ckpt_creds.c).


def _kcreds(guest):
    result = _report(guest)["steps"]["kernel_creds"]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    return result


def test_module_checkpoint_records_the_credentials(guest):
    """nobody's program in group 100: the module's image holds the credentials crfs's
    writer reads from /proc (ids, groups, capability sets, securebits)."""
    result = _kcreds(guest)
    kernel_creds = result["kernel_creds"]
    assert kernel_creds == result["python_creds"], result
    real = kernel_creds[0][0]
    assert real["uid"] == real["euid"] == real["suid"] == real["fsuid"] == 65534, real
    assert real["groups"] == [100] and real["cap_eff"] == real["cap_prm"] == 0, real


@pytest.mark.parametrize("by", ["by_root", "by_nobody"])
def test_module_checkpoint_restarts_with_its_credentials(guest, by):
    """Restarted by root or by nobody in group 100: runs as nobody in group 100 with no
    capabilities (a module image used to run with the restarter's, root's)."""
    restored = _kcreds(guest)[by]
    assert restored["errno"] == "restored", restored
    status = restored["status"]
    assert status["Uid"] == ["65534"] * 4 and status["Gid"] == ["65534"] * 4, restored
    assert status["Groups"] == ["100"], restored
    assert status["CapEff"] == status["CapPrm"] == ["0000000000000000"], restored
    assert _ticks(restored["after"]), restored


def test_module_checkpoint_of_nobody_refused_to_another_user(guest):
    result = _kcreds(guest)["by_other"]
    assert result["errno"] == "EPERM", result
    assert result["msg"] == "image uid 65534 is not the caller's", result


# --------------------------------------------------------------------------- kernel fuzzing
# Step fuzz (tests/guest_fuzz.py): mutated real images through CHECK and RESTART, bad
# ioctl arguments. Bounded in time under TCG; fuzz/kmod_fuzz.py runs the long campaign.


def _fuzz(guest):
    return _report(guest)["steps"]["fuzz"]


def test_fuzz_seeds_are_sound(guest):
    """The seeds (real images, page chunks cut short) pass CHECK: the mutations start
    from valid images."""
    fuzz = _fuzz(guest)
    assert len(fuzz["seeds"]) >= 3, fuzz["seeds"]
    assert fuzz["seed_check"]["accepted"] == len(fuzz["seeds"]), fuzz["seed_check"]


def test_fuzzed_check_refuses_with_a_reason(guest):
    """Thousands of structure-aware mutations through CHECK: every refusal an expected
    errno with a reason; the kernel stays quiet (no WARN, Oops or hang: the harness)."""
    check = _fuzz(guest)["check"]
    assert check["inputs"] >= 2000, check
    assert check["no_reason_count"] == 0, check["no_reason"]
    assert check["unexpected"] == [], check["unexpected"]
    assert set(check["errnos"]) >= {"EINVAL"} and check["accepted"] > 0, check


def test_fuzzed_restart_refuses_with_a_reason(guest):
    """A sample of mutations restarted by crfs-restart in a child: refused with a reason,
    or restored (then killed)."""
    restart = _fuzz(guest)["restart"]
    assert restart["inputs"] >= 20, restart
    assert restart["no_reason_count"] == 0, restart["no_reason"]
    assert restart["unexpected"] == [], restart["unexpected"]


def test_bad_ioctl_arguments_are_refused(guest):
    fuzz = _fuzz(guest)
    assert fuzz["arguments"]["calls"] >= 200 and fuzz["arguments"]["succeeded"] == [], \
        fuzz["arguments"]
    outcomes = fuzz["restart_arguments"]
    assert "ok" not in outcomes and "no report" not in outcomes, outcomes
    assert not any(key.startswith("child") for key in outcomes), outcomes


def test_fuzzing_leaves_the_kernel_log_clean(guest):
    assert _fuzz(guest)["dmesg_problems"] == []
# --------------------------------------------------------------------------- zdtm
# CRIU's zdtm test programs (../shared/zdtm, its README.md), checkpointed by crfs and
# restarted, in the same guest boot (step "zdtm", tests/guest_zdtm.py). One test per program
# and way: `crfs checkpoint --via ptrace` + crfs-restart ("zdtm-NAME"), root's compiled
# `crfs checkpoint` (kmod/crfs-front.c: the module writes the image) + crfs-restart
# ("zdtm-NAME-kernel"), `--via kernel` + `crfs-restart --lazy`
# ("zdtm-NAME-lazy"), ptrace + `cp` into a crfs mount's restart/ ("zdtm-NAME-cp",
# ZDTM_BY_CP only), `criu dump` + `crfs convert --format ckpt` + crfs-restart
# ("zdtm-NAME-criu", issue #15). `pytest -k zdtm` runs them alone (with
# CRFS_GUEST_STEPS=zdtm, only that step boots).

SHARED_ZDTM = REPO.parent / "shared" / "zdtm"
ZDTM_BUDGET = int(os.environ.get("CRFS_ZDTM_BUDGET", 1800))  # seconds for the whole step
# $CRFS_ZDTM_RUNS: which ways, in order, of kernel, lazy, cp, ptrace, criu+convert (the
# default: all five) and none
# seconds, raised from the runner's 10 s start / 20 s checkpoint / 10 s restart: maps04 fills
# 512 MiB with pseudo-random data before it is ready (10-26 s under TCG), then that is its
# image (module checkpoint 13 s, restart 8 s on a loaded host); maps05's ptrace checkpoint
# of its many small VMAs took 16-20+ s on a loaded host
ZDTM_LIMITS = {"maps04": {"start": 90, "checkpoint": 90, "restart": 60},
               "maps05": {"checkpoint": 60}}
ZDTM_BY_CP = ("busyloop00", "fpu00", "pthread01", "pstree", "pipe00", "fd", "cwd01",
              "sigpending")


def _zdtm_names():
    """The tests of ../shared/zdtm/tests.txt, [] when ../shared is absent; only those
    named in $CRFS_ZDTM_TESTS (comma-separated) when it is set (a developer's loop)."""
    listing = SHARED_ZDTM / "tests.txt"
    if not listing.exists():
        return []
    names = [line.strip() for line in listing.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    wanted = os.environ.get("CRFS_ZDTM_TESTS")
    return [n for n in names if n in wanted.split(",")] if wanted else names


def _step_selected(step):
    wanted = os.environ.get("CRFS_GUEST_STEPS")
    return not wanted or step in wanted.split(",")


def _build_zdtm(work):
    """The zdtm programs built in a copy (../shared stays read-only): (the manifest's zdtm
    section, None) or (None, why not)."""
    names = _zdtm_names()
    if not names:
        return None, f"{SHARED_ZDTM}/tests.txt is absent (../shared is not there)"
    copy = work / "zdtm"
    shutil.copytree(SHARED_ZDTM, copy)
    for cmd in (["make", "-s", "-C", str(copy / "lib"), "libzdtmtst.a"],
                ["make", "-s", f"-j{os.cpu_count() or 1}", "-C", str(copy / "static"), *names]):
        build = subprocess.run(cmd, capture_output=True, text=True)
        if build.returncode != 0:
            return None, f"{' '.join(cmd[:4])}: {(build.stdout + build.stderr)[-1500:]}"
    commands = guest_zdtm.start_commands(copy / "static", names)
    runs = {"ptrace": {"via": "ptrace", "restart": "restarter", "tests": names},
            "cp": {"via": "ptrace", "restart": "cp",
                   "tests": [n for n in ZDTM_BY_CP if n in names]},
            # root's compiled `crfs checkpoint` (kmod/crfs-front.c), which has crfs.ko
            # write the image as `--via kernel` does
            "kernel": {"via": "front", "restart": "restarter", "tests": names},
            # --via kernel + crfs-restart --lazy (issue #14): pages through userfaultfd
            "lazy": {"via": "kernel", "restart": "lazy", "tests": names},
            # `criu dump` (Debian's criu), `crfs convert --format ckpt`, crfs-restart
            "criu+convert": {"via": "criu", "restart": "restarter", "tests": names,
                             # $CRFS_ZDTM_KEEP: failed tests' dumps kept in work/zdtm-dumps
                             "keep": str(work / "zdtm-dumps")
                             if os.environ.get("CRFS_ZDTM_KEEP") else None},
            # not by default: no checkpoint at all (start, SIGTERM), the runner's baseline
            "none": {"via": "none", "restart": None, "tests": names}}
    # the module's checkpoints are the fastest (no Python reads the memory): first, so that
    # a slow host that spends the budget still has every test of one way
    wanted = os.environ.get("CRFS_ZDTM_RUNS", "kernel,lazy,cp,ptrace,criu+convert").split(",")
    runs = [{"label": label, "commands": commands, "limits": ZDTM_LIMITS, **runs[label]}
            for label in wanted]
    return {"dir": str(copy), "runs": runs, "budget": ZDTM_BUDGET,
            "results": str(work / "zdtm-results.jsonl")}, None


def _zdtm_results(zdtm, error):
    """{(run label, test): result} from the guest's results file (written test by test, so
    it has what was done even when the guest ran out of time), or {"error": why}."""
    if zdtm is None:
        return {"error": error or "the zdtm step was not selected (CRFS_GUEST_STEPS)"}
    path = Path(zdtm["results"])
    results = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            results[(row["run"], row["test"])] = row
    return {"results": results, "ways": [run["label"] for run in zdtm["runs"]]}


# What fails today, with the reason seen in the guest (2026-12-05, after shared anonymous
# memory, anon-inode files, deleted files, zombies and task state landed). xfail,
# not strict: features land while the lists are updated from the guest's report (an XPASS
# is reported, not fatal); a test NOT listed must pass.
MAPS04 = ("512 MiB of data under TCG: near its time limits (start 90 s, checkpoint 90 s); "
          "passes on a quieter guest")
# --via ptrace + crfs-restart, the front + crfs-restart, --via ptrace + cp into restart/
KNOWN_FAILING = {
    "maps04": MAPS04,
    "cow00": "FAIL: cow00.c:105: A page is not shared",
    "cow01": "FAIL: private pages shared over fork are not restored copy-on-write",
    "seccomp_filter": "restart: task N: seccomp filter mode (2) is not restored",
}
KNOWN_FAILING_VIA_KERNEL = {
    "cow00": "FAIL: cow00.c:105: A page is not shared",
    "cow01": "FAIL: private pages shared over fork are not restored copy-on-write",
    "seccomp_filter": "restart: task N: seccomp filter mode (2) is not restored",
}
KNOWN_FAILING_BY_CP = {
}
# --via kernel + crfs-restart --lazy: as --via kernel (process trees served too)
KNOWN_FAILING_LAZY = dict(KNOWN_FAILING_VIA_KERNEL)
# criu dump + crfs convert + crfs-restart (2026-12-05: 60/63): what the restart does not
# restore for any way, and what a criu dump does not carry
KNOWN_FAILING_CRIU = {
    "cow00": "FAIL: cow00.c:105: A page is not shared",
    "cow01": "FAIL: private pages shared over fork are not restored copy-on-write",
    "seccomp_filter": "restart: task N: seccomp filter mode (2) is not restored",
}


def _zdtm_params():
    names = _zdtm_names()
    if not names:
        return [pytest.param("ptrace", None, id="zdtm-unavailable")]
    ways = (("ptrace", "", names, KNOWN_FAILING),
            ("kernel", "-kernel", names, KNOWN_FAILING_VIA_KERNEL),
            ("cp", "-cp", [n for n in ZDTM_BY_CP if n in names], KNOWN_FAILING_BY_CP),
            ("lazy", "-lazy", names, KNOWN_FAILING_LAZY),
            ("criu+convert", "-criu", names, KNOWN_FAILING_CRIU))
    params = []
    for label, suffix, tests, known in ways:
        for name in tests:
            marks = ([pytest.mark.xfail(reason=known[name], strict=False, raises=AssertionError)]
                     if name in known else [])
            params.append(pytest.param(label, name, id=f"zdtm-{name}{suffix}", marks=marks))
    return params


@pytest.mark.guest_part      # reads the guest boot through request.getfixturevalue
@pytest.mark.parametrize("way, name", _zdtm_params())
def test_zdtm(way, name, request):
    """The zdtm program, started (`make NAME.pid`), checkpointed with --tree --kill,
    restarted, sent SIGTERM: it writes PASS (its state was as it set it up)."""
    if name is None:
        reason = f"{SHARED_ZDTM} is absent: the zdtm programs are in ../shared (CI has it)"
        if guest_parts.in_ci():
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    guest = request.getfixturevalue("guest")
    zdtm = guest["zdtm"]
    if "error" in zdtm:
        pytest.fail(f"zdtm: {zdtm['error']}")
    if way not in zdtm["ways"]:
        pytest.skip(f"way {way} not selected (CRFS_ZDTM_RUNS={','.join(zdtm['ways'])})")
    row = zdtm["results"].get((way, name))
    if row is None:
        pytest.fail(f"no result for {name} ({way}): the guest did not get to it (harness "
                    f"status {guest['rc']})")
    if row["result"] == "NOT RUN":     # test_zdtm_step_ran_every_test fails for it
        pytest.skip(f"{name} ({way}) not run: {row['reason']}")
    assert row["result"] == "PASS", f"{name} ({way}): {row['reason']} {row.get('seconds')}"


def test_zdtm_step_ran_every_test(guest):
    """The zdtm step got through every test of every way within its budget
    (CRFS_ZDTM_BUDGET seconds): none was left out for lack of time."""
    zdtm = guest["zdtm"]
    if "error" in zdtm:
        pytest.skip(f"zdtm: {zdtm['error']}")
    left = sorted(f"{way}:{name}" for (way, name), row in zdtm["results"].items()
                  if row["result"] == "NOT RUN")
    assert left == [], f"{len(left)} zdtm tests not run within {ZDTM_BUDGET}s: {left}"


def test_restart_restores_every_threads_signal_state(guest):
    """sig_target with a second thread that blocks SIGUSR1, SIGUSR2, SIGTERM and SIGWINCH
    and has SIGWINCH pending: restarted, each thread has its own blocked and pending
    signals again, and the process's handlers still run in the main thread."""
    run = _signals(guest)["threaded"]
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    original = run["original"]
    assert original["threads"] == [
        {"SigPnd": "0000000000000800", "SigBlk": "0000000000000800"},
        {"SigPnd": "0000000008000000", "SigBlk": "0000000008004a00"}], original
    restored = run["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["observed"]["threads"] == original["threads"], restored
    assert restored["observed"]["status"] == original["status"], restored
    assert restored["usr1"] == ("usr1 onstack=1 umask=027 nofile=100 itimer=7 "
                                f"cwd={SIG_DIR} blocked_usr2=1"), restored
    assert restored["term"] == "term" and restored["exit"] == 0, restored


# --------------------------------------------------------------------------- module files
# Step kernel_files (tests/guest_ckpt_files.py): CHECKPOINT writes the file table
# (kmod/crfs_ckpt_files.c).


def _kfiles(guest):
    result = _report(guest)["steps"]["kernel_files"]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert "error" not in result, result["error"]
    return result


def test_module_checkpoint_file_table_matches_the_userspace_writer(guest):
    """files_target, `crfs checkpoint --via kernel --leave-stopped`, then the userspace
    writer: the same records (file tables included) and, per fd, the same kind, name,
    flags, mode, position, close-on-exec and pipe bytes."""
    result = _kfiles(guest)
    assert result["python"]["rc"] == 0, result["python"]
    same = result["same_as_python"]
    assert same["records_equal"] and same["files_equal"], same
    table = {fd[0]: fd for fd in same["files"][0][0]}
    assert table[10][1] and not table[4][1]                  # close-on-exec
    assert table[7][2] == table[8][2] == "pipe" and table[7][7]     # the bytes buffered
    assert table[6][3] == "/dev/null", table[6]
    assert table[4][6] == 1234 and table[9][3] == table[4][3], table


def test_module_checkpoint_restarts_with_its_fds(guest):
    """The module's image of files_target restarted by crfs-restart: the same fds (log
    O_APPEND, /dev/null, the dup sharing its offset, the close-on-exec fd), a new pipe
    with the bytes, and the program's own checks pass until it exits."""
    result = _kfiles(guest)
    assert result["restart"]["errno"] == 0, result["restart"]
    before, after = result["before"], result["after"]
    assert set(after) == set(before)
    for fd in ("5", "6", "10", "20"):
        assert after[fd] == before[fd], fd
    for fd in ("4", "9"):
        assert after[fd][:2] == before[fd][:2] and after[fd][2] in ("1234", "1235"), fd
    assert after["7"][0].startswith("pipe:[") and after["7"][0] == after["8"][0]
    assert result["exit"] == "exited 3", result["exit"]
    ticks = [line for line in result["lines"] if line.startswith("tick ")]
    assert all(line.endswith("files=ok") for line in ticks), ticks
    assert result["lines"][-1] == "pipe=ok"
    assert result["log"] == ticks


def test_module_checkpoint_refuses_a_pipe_too_full_to_restart(guest):
    """A pipe holding 1 MiB + 4096 bytes (more than RESTART takes): CHECKPOINT refuses,
    naming its fd."""
    big = _report(guest)["steps"]["kernel_files"]["big_pipe"]
    assert big["rc"] != 0, big
    assert "fd 5: a pipe holding more than 1048576 bytes" in big["stderr"], big


# --------------------------------------------------------------------------- shared anon memory

def _shm_counts(lines, who):
    """[(n, seen)] of shm_tree_target's `who` lines; every pattern check must be ok."""
    out = []
    for line in lines:
        if line.startswith(who + " ") and "seen=" in line and " done " not in line:
            fields = dict(f.split("=", 1) for f in line.split()[2:])
            assert fields["pattern"] == "ok", line
            out.append((int(line.split()[1]), int(fields["seen"])))
    return out


@pytest.mark.parametrize("step", ["shm_tree", "shm_tree_kernel"])
def test_restart_shares_anonymous_memory_between_processes(guest, step):
    """shm_tree_target (a parent and its child counting in MAP_SHARED|MAP_ANONYMOUS pages),
    `crfs checkpoint --tree --kill` (the Python writer or the module), crfs-restart: both
    map one "/dev/zero (deleted)" inode again at the same address, the pattern survives,
    each sees the other's counter move on after the restart, and the pipe they share
    works."""
    tree = _report(guest)["steps"][step]
    assert tree["checkpoint"]["rc"] == 0, tree["checkpoint"]["stderr"]
    assert tree["restart"]["errno"] == 0, tree["restart"]
    before, after = tree["before"], tree["after"]
    assert len(before["parent"]) == 1 and before["parent"] == before["child"], before
    assert len(after["parent"]) == 1 and after["parent"] == after["child"], after
    assert after["parent"][0][3] == "/dev/zero (deleted)", after
    assert after["parent"][0][:2] == before["parent"][0][:2], (before, after)
    assert tree["exit"] == "exited 3", tree["exit"]
    old, new = tree["lines_before"], tree["lines_after"]
    child_old, parent_old = _shm_counts(old, "child"), _shm_counts(old, "parent")
    child_new, parent_new = _shm_counts(new, "child"), _shm_counts(new, "parent")
    assert child_new and parent_new, new[:5]
    # the counters go on from where they were (private memory) ...
    assert child_new[0][0] == child_old[-1][0] + 1 and parent_new[0][0] == parent_old[-1][0] + 1
    # ... and each process sees the other's writes made after the restart
    assert max(seen for _, seen in parent_new) > child_old[-1][0] + 1
    assert max(seen for _, seen in child_new) > parent_old[-1][0] + 1
    done = new[-1].split()
    assert done[:2] == ["parent", "done"] and done[3] == "status=5", new[-1]
    assert int(done[2][5:]) == child_new[-1][0]
    # the pipe both processes kept (each end a FILE object of two processes, of one pipe
    # of two: made by one process, taken by the other) carried the child's last count
    assert done[4] == f"piped={child_new[-1][0]}", new[-1]


@pytest.mark.parametrize("step", ["shm_tree", "shm_tree_kernel"])
def test_restart_fails_cleanly_when_a_shared_file_cannot_be_made(guest, step):
    """The shm_tree image with its stdout file (one FILE object of both processes) renamed
    to a path that does not exist: the process that makes it fails, the other one (waiting
    for it, or after it) fails alike; the restart reports ENOENT naming the path, nothing
    hangs."""
    got = _report(guest)["steps"][step]["refused"]["shared_file_gone"]
    assert got["errno"] == "ENOENT", got
    assert "tree.ouX" in got["msg"] and got["msg"].startswith("task "), got


@pytest.mark.parametrize("name", ["skip_size_differs", "skip_pgoff_past", "dump_pgoff_past"])
def test_restart_refuses_inconsistent_shared_segments(guest, name):
    """The shm_tree image patched: a SHM_ANON_SKIP VMA whose ino_size differs from the
    dumped segment's, a SKIP or SHM_ANON VMA whose vm_pgoff lies past the segment: EINVAL
    at copy-in, the VMA named."""
    got = _report(guest)["steps"]["shm_tree"]["refused"][name]
    reason = "differs from shm" if name == "skip_size_differs" else "past shm"
    assert got["errno"] == "EINVAL" and reason in got["msg"], got
# --------------------------------------------------------------------------- anon-inode files
# Step anonfd (tests/guest_anonfd.py): eventfd, timerfd, signalfd, epoll restored from both
# checkpointers (kmod/crfs_anonfd.c, kmod/crfs_ckpt_anon.c, crfs-restart).


def _anonfd(guest):
    result = _report(guest)["steps"]["anonfd"]
    assert "error" not in result, result["error"]
    return result


def _same_anon_state(before, after):
    """fdinfo of anon fds 4-12 before the checkpoint and after the restart: the same kinds,
    flags, eventfd count, timerfd clock, settime flags, interval and unread ticks, signalfd
    mask, epoll watches (fd, events, data); remaining times only went down."""
    assert set(after) == set(before)
    for fd, lines in before.items():
        again = after[fd]
        if lines[0].startswith("pipe:["):       # a new pipe, its ends where they were
            assert again[0].startswith("pipe:[") and again[1:] == lines[1:], fd
            continue
        assert again[0] == lines[0], fd
        if lines[0] == "anon_inode:[eventpoll]":
            watch = [line.split(" ino:")[0] for line in lines[2:]]
            assert sorted(line.split(" ino:")[0] for line in again[2:]) == sorted(watch), fd
            continue
        fixed = [line for line in lines if not line.startswith("it_value")]
        assert [line for line in again if not line.startswith("it_value")] == fixed, fd
        value = [line for line in lines if line.startswith("it_value")]
        if value:
            old = int(value[0].split("(")[1].split(",")[0])
            new = int([line for line in again if line.startswith("it_value")][0]
                      .split("(")[1].split(",")[0])
            assert 0 < new <= old or old == new == 0, (fd, lines, again)


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_anon_inode_files_restart_with_their_state(guest, way):
    """anonfd_target (an eventfd and its dup, three timerfds, a signalfd, an epoll watching
    the eventfd, the signalfd and a pipe) checkpointed by `crfs checkpoint --via WAY`,
    restarted by crfs-restart (which makes the files and hands them in): /proc/PID/fdinfo
    says the same state, the monotonic timers continue with their remaining time."""
    result = _anonfd(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert result["restart"]["errno"] == 0, result["restart"]
    _same_anon_state(result["before"], result["after"])


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_restored_program_uses_its_anon_inode_files(guest, way):
    """The program's own checks after the restart: epoll reports the eventfd and the pipe,
    then the signalfd once SIGUSR1 is raised; the signalfd reads it; fd 5 reads the count
    and fd 4 then finds it gone (one open file); the pipe's bytes; the 20 ms timer has
    ticked; the 100 s and the absolute realtime timer are still due."""
    result = _anonfd(guest)[way]
    assert result["exit"] == "exited 3", result["exit"]
    assert result["lines"][-1] == "anon=ok", result["lines"][-3:]


def test_malformed_anon_file_records_are_refused(guest):
    """CHECK of the ptrace image with one field of an anon FILE record made wrong: EINVAL
    and the reason."""
    records = _anonfd(guest)["records"]
    expected = {
        "eventfd_flags": "eventfd flags 0x100",
        "eventfd_count_max": "eventfd count 18446744073709551615",
        "eventfd_rdonly": "[eventfd] FILE not O_RDWR",
        "timerfd_clock": "timerfd clockid 99",
        "timerfd_flags": "timerfd settime flags 0x8",
        "timerfd_value": "timerfd time out of range",
        "signalfd_flags": "signalfd flags 0x1",
        "epoll_long": "[eventpoll] FILE of 64 bytes, expected 48",
    }
    for label, reason in expected.items():
        assert records[label] == {"errno": "EINVAL", "msg": reason}, label


def test_anon_files_handed_in_that_lie_are_refused(guest):
    """RESTART_FILES with tables that do not fit the image: refused with errno and reason
    before anything changes (the caller goes on); crfs-restart -A (nothing handed in):
    the first anon fd refuses the restart; crfs-restart refuses a watch of a regular file
    and an EPOLL_ITEMS count its BUFFER does not hold."""
    lying = _anonfd(guest)["lying"]
    expected = {
        "pipe_as_eventfd": ("EINVAL", "is not an [eventfd] file"),
        "eventfd_as_timerfd": ("EINVAL", "is not an [timerfd] file"),
        "unknown_objref": ("EINVAL", "handed objref 99999 is not a file of the image"),
        "regular_file_objref": ("EINVAL", "(f_type 1) is not handed in"),
        "objref_twice": ("EINVAL", "not positive or twice"),
        "objref_zero": ("EINVAL", "handed objref 0: not positive or twice"),
        "fd_not_open": ("EBADF", "handed fd 999 ("),
        "too_many": ("EINVAL", "nr_handed 4097 (at most 4096)"),
        "reserved": ("EINVAL", "__reserved 1"),
        "nonblock_differs": ("EINVAL", "O_NONBLOCK differs"),
        "pipe_wrong_mode": ("EINVAL", "is not a pipe end of its mode"),
        "pipe_two_pipes": ("EINVAL", "ends of two pipes handed in"),
        "pipe_one_end": ("EINVAL", "not handed in"),
        "not_handed_in": ("EOPNOTSUPP", "fd 4: an eventfd not handed in"),
        # refused by crfs-restart itself, before the kernel
        "watch_regular_file": ("EOPNOTSUPP", "not an eventfd, timerfd, signalfd or epoll"),
        "items_count_lies": ("EINVAL", "9 watches not in a BUFFER"),
    }
    for label, (code, reason) in expected.items():
        assert lying[label]["errno"] == code and reason in lying[label]["msg"], (label,
                                                                                 lying[label])


# --------------------------------------------------------------------------- task state
# Step task_state (tests/guest_task_state.py): oom_score_adj, rseq, zombies and a stopped
# child, captured by both checkpointers and restored (kmod/crfs_task_state.c,
# kmod/crfs-restart.c).

# (exit_state, exit_code, exit_signal) of the zombies: exited with 7, killed by SIGUSR2
STATE_ZOMBIES = [[16, 7 << 8, 17], [16, 12, 17]]
# what the restored program sees: oom_score_adj, rseq still registered, each child as
# waitid() reports it (same pid, CLD_EXITED 7, CLD_KILLED SIGUSR2, CLD_STOPPED SIGSTOP),
# its queued SIGRTMIN+1 with its value and the bytes in siginfo's padding
STATE_LINE = "state oom=400 rseq=registered z1=1/1/7 z2=1/2/12 st=1/5/19 rt=42/5a5a5a5a"


def _task_state(guest):
    return _report(guest)["steps"]["task_state"]


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_task_state_is_captured_and_restored(guest, way):
    """tests/c/state_target.c checkpointed by `crfs checkpoint --via WAY --tree --kill`:
    the image has its OOM_SCORE_ADJ, RSEQ records and its two zombies; restarted, its
    oom_score_adj is 400, its rseq area registered, its zombies wait for it with their
    pids and statuses, its stopped child is stopped; on SIGTERM it reaps them and exits 0."""
    result = _task_state(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result
    image = result["checkpoint"]["image"]
    assert image["oom"] == 2 and image["rseq"] >= 2, image     # the stopped child inherited it
    assert image["zombies"] == STATE_ZOMBIES and image["raw"] == 1, image
    restored = result["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["oom_score_adj"] == "400", restored
    assert restored["lines"] == [STATE_LINE, "term"] and restored["rc"] == 0, restored


@pytest.mark.parametrize("label, code, rtype, message", [
    ("oom_out_of_range", "EINVAL", 8020, r"task \d: oom_score_adj 5000 out of \[-1000, 1000\]"),
    ("rseq_misaligned", "EINVAL", 8021,
     r"task \d: RSEQ: a struct rseq of 32 bytes at 0x[0-9a-f]*4"),
    ("rseq_length", "EINVAL", 8021,
     r"task \d: RSEQ: a struct rseq of 64 bytes at 0x[0-9a-f]+"),
    ("zombie_status", "EINVAL", 102, r"task \d+: zombie exit status 0x7f"),
    ("raw_siginfo_signal", "EINVAL", 8022,
     r"task \d: SIGINFO_RAW: siginfo 0 is not the SIGPENDING's"),
])
def test_malformed_task_state_is_refused(guest, label, code, rtype, message):
    """One record of the ptrace image made wrong: refused with its errno, record type and
    reason; nothing restored."""
    refused = _task_state(guest)["malformed"][label]
    assert refused["errno"] == code and refused["type"] == rtype, refused
    assert re.fullmatch(message, refused["msg"]), refused


def test_oom_score_adj_below_the_callers_needs_cap_sys_resource(guest):
    """oom_score_adj -500 in the image: nobody (whose minimum is 0) is refused, as writing
    /proc/self/oom_score_adj would be; root restores it."""
    result = _task_state(guest)["low_oom"]
    refused = result["by_nobody"]
    assert refused["errno"] == "EACCES", refused
    assert refused["msg"] == ("task 0: oom_score_adj -500 below the caller's minimum 0 "
                              "needs CAP_SYS_RESOURCE"), refused
    restored = result["by_root"]
    assert restored["errno"] == "restored" and restored["oom_score_adj"] == "-500", restored
    assert restored["lines"] == [STATE_LINE.replace("400", "-500"), "term"], restored
    assert restored["rc"] == 0, restored


def test_task_state_step_leaves_nothing_running(guest):
    assert _task_state(guest)["left"] == []


# --------------------------------------------------------------------------- task attributes
# Step taskattr (tests/guest_taskattr.py): personality, THP disable, child subreaper, nice
# and policy (CRFS_HDR_TASK_MISC, kmod/crfs_task_misc.c) and a child's exit signal
# (kmod/crfs-restart.c), captured by both checkpointers and restored.

PERSONA = 0x600000      # READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT, without ADDR_NO_RANDOMIZE
# what the restored program sees of itself and its child, then of the child's end
ATTR_LINES = ["attr persona=600000 thp_disable=1 subreaper=1 nice=7 policy=3 rtprio=0 "
              "child_exit_signal=10 plain_wait=ECHILD", "term usr1=1 adopted=1"]
ATTR_PROC = {"personality": "00600000", "thp_enabled": "0", "nice": "7",
             "rt_priority": "0", "policy": "3"}


def _taskattr(guest):
    return _report(guest)["steps"]["taskattr"]


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_task_attributes_are_captured_and_restored(guest, way):
    """tests/c/taskattr_target.c checkpointed by `crfs checkpoint --via WAY --tree --kill`:
    a TASK_MISC per process (the child inherited all but the subreaper), the child's TASK
    exit_signal SIGUSR1; restarted by root, the program itself and /proc see its
    personality (not crfs-restart's ADDR_NO_RANDOMIZE), THP disabled, subreaper, nice 7
    SCHED_BATCH, and a child that only __WCLONE waits for, whose end sends SIGUSR1 and
    whose orphan (the grandchild) it adopts: the restored child has has_child_subreaper."""
    result = _taskattr(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result
    image = result["checkpoint"]["image"]
    assert image["misc"] == [[PERSONA, 3, 3, 0, 7]] + [[PERSONA, 1, 3, 0, 7]] * 2, image
    assert image["exit_signals"] == [17, 10, 17], image
    (virt, virt_incr, prof, prof_incr), *children_itimers = image["itimers"]
    assert (virt_incr, prof_incr) == (500 * 10**9, 700 * 10**9), image
    assert 990 * 10**9 < virt <= 1001 * 10**9 and 1990 * 10**9 < prof <= 2001 * 10**9
    assert children_itimers == [[0] * 4] * 2, image     # fork(2) does not pass them on
    restored = result["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["proc"] == {"parent": {**ATTR_PROC, "exit_signal": "17"},
                                "child": {**ATTR_PROC, "exit_signal": "10"}}, restored
    itimers, *lines = restored["lines"]
    assert lines == ATTR_LINES and restored["rc"] == 0, restored
    assert_itimers(itimers)


def assert_itimers(line):
    """ITIMER_VIRTUAL 1000 s / 500 s and ITIMER_PROF 2000 s / 700 s, as armed (ms): the
    time left is less by the CPU time spent since (and a tick's rounding more)."""
    values = dict(item.split("=") for item in line.split()[1:])
    virt, virt_incr = map(int, values["virt"].split("/"))
    prof, prof_incr = map(int, values["prof"].split("/"))
    assert (virt_incr, prof_incr) == (500_000, 700_000), line
    assert 990_000 < virt <= 1_000_100 and 1_990_000 < prof <= 2_000_100, line


@pytest.mark.parametrize("label, message", [
    ("low_nice", r"task 0: nice -5 below the caller's 0 needs CAP_SYS_NICE or RLIMIT_NICE"),
    ("fifo", r"task 0: policy 1 needs CAP_SYS_NICE or RLIMIT_RTPRIO"),
])
def test_more_priority_than_the_restarter_may_is_refused(guest, label, message):
    """A lower nice or SCHED_FIFO in the image, restarted by nobody: EPERM and why, as
    setpriority(2) / sched_setscheduler(2) would refuse it nobody."""
    refused = _taskattr(guest)["cases"][label]
    assert refused["errno"] == "EPERM", refused
    assert re.fullmatch(message, refused["msg"]), refused


def test_sched_fifo_is_restored_for_root(guest):
    restored = _taskattr(guest)["cases"]["fifo_by_root"]
    assert restored["errno"] == "restored", restored
    assert restored["proc"]["parent"]["policy"] == "1", restored
    assert restored["proc"]["parent"]["rt_priority"] == "10", restored
    assert restored["lines"][1:] == [ATTR_LINES[0].replace("policy=3 rtprio=0",
                                                           "policy=1 rtprio=10"),
                                     ATTR_LINES[1]], restored


@pytest.mark.parametrize("label, rtype, message", [
    ("policy_4", 8050, r"task \d: unknown policy: policy 4 rt_priority 0"),
    ("deadline", 8050, r"task \d: SCHED_DEADLINE is not restored: policy 6 rt_priority 0"),
    ("nice_20", 8050, r"task \d: nice 20 out of \[-20, 19\]"),
    ("batch_rt_priority", 8050, r"task \d: bad rt_priority: policy 3 rt_priority 5"),
    ("flags", 8050, r"task \d: flags 0x4"),
    ("exit_signal_99", 102, r"task 1: exit_signal 99"),
])
def test_malformed_task_attributes_are_refused(guest, label, rtype, message):
    """One field of the ptrace image made wrong: EINVAL with the record type and why (each
    process of the tree reads every task's records: either may report it)."""
    refused = _taskattr(guest)["cases"][label]
    assert refused["errno"] == "EINVAL" and refused["type"] == rtype, refused
    assert re.fullmatch(message, refused["msg"]), refused


def test_itimers_not_armed_by_the_restarter_are_refused(guest):
    """crfs-restart -T arms no timer: RESTART finds the caller's ITIMER_VIRTUAL not armed
    as the image's and refuses it (the module cannot arm it itself)."""
    refused = _taskattr(guest)["cases"]["no_itimers"]
    assert refused["errno"] == "EOPNOTSUPP", refused
    assert refused["msg"] == ("task 0: ITIMER_VIRTUAL: the caller's is not armed as the "
                              "image's (crfs-restart arms it)"), refused


def test_taskattr_step_leaves_nothing_running_and_a_clean_kernel(guest):
    result = _taskattr(guest)
    assert result["left"] == [] and result["dmesg_problems"] == [], result


# --------------------------------------------------------------------------- file owners
# Step fown (tests/guest_fown.py): O_ASYNC files with an owner for SIGIO and an F_SETSIG
# signal, captured by both checkpointers (CRFS_HDR_FILE_OWNER) and restored
# (kmod/crfs_fown.c).

def _fown(guest):
    return _report(guest)["steps"]["fown"]


# own=F_OWNER_PID/is itself, sig=SIGUSR2, O_ASYNC, the other pipe owned by its child, the
# SIGUSR2 a write brings with si_fd = that pipe and si_code POLL_IN, the child's SIGIO
FOWN_LINE = "state own=1/1 sig=12 async=1 cown=1 usr2=1/1 child_sigio=1"


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_file_owner_and_signal_are_captured_and_restored(guest, way):
    """tests/c/fown_target.c (as nobody) checkpointed by `crfs checkpoint --via WAY --tree
    --kill`: a FILE_OWNER for each owned pipe (the process, SIGUSR2; its child, SIGIO);
    restarted by root, fcntl gives the same owners, signal and O_ASYNC, and writes into
    the pipes signal the process (siginfo naming the fd) and its child."""
    result = _fown(guest)[way]
    ck = result["checkpoint"]
    assert ck["rc"] == 0, ck
    (own, child), = [ck["owners"]]
    assert own == [ck["pid"], 1, 12] and child[1:] == [1, 0], ck
    assert child[0] not in (0, ck["pid"]), ck
    restored = result["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["lines"] == [FOWN_LINE, "term"] and restored["rc"] == 0, restored


@pytest.mark.parametrize("label, code, rtype, message", [
    ("pid_type", "EINVAL", 8009, r"task \d: owner pid_type 7"),
    ("signum", "EINVAL", 8009, r"task \d: signum 65"),
    ("not_in_image", "EINVAL", 8009, r"task \d: owner 1 is not a process of the image"),
    ("negative", "EINVAL", 8009, r"task \d: owner -5 is not a process of the image"),
    ("pgrp", "EOPNOTSUPP", 0,
     r"task \d: fd 3: owner process group \d+: process groups are not restored"),
    # with -N both processes own files of the other: whichever refuses first reports
    ("new_pids", "EPERM", 0,
     r"task [01]: fd [35]: owner \d+ is not a process of the restored tree"),
])
def test_file_owners_that_lie_or_name_others_are_refused(guest, label, code, rtype,
                                                         message):
    """The ptrace image's FILE_OWNER made wrong (a pid_type, a signal, a pid of no task
    of the image), naming a process group, or restarted with new pids (-N), so that the
    child's pid is no process of the restored tree: refused with the errno and reason,
    nothing left running."""
    refused = _fown(guest)["malformed"][label]
    assert refused["errno"] == code and refused["type"] == rtype, refused
    assert re.fullmatch(message, refused["msg"]), refused
    assert refused["lines"] == [], refused
    assert _fown(guest)["left"] == []


# --------------------------------------------------------------------------- deleted files
# Step deleted (tests/guest_deleted.py): files deleted while open, memfds, O_PATH fds on
# symlinks (deleted or not), namespace files and a deleted cwd (kmod/crfs_deleted.c,
# kmod/crfs_nsfile.c), with both checkpointers.

DELETED_CHECKS = ("deleted_stat", "deleted_pos", "deleted_flags", "deleted_same_inode",
                  "deleted_content", "deleted_write", "memfd", "memfd_name",
                  "deleted_symlink", "live_symlink", "ns_file", "deleted_cwd",
                  "deleted_dir_fd")


def _deleted(guest):
    result = _report(guest)["steps"]["deleted"]
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("via", ["ptrace", "kernel"])
def test_deleted_things_come_back(guest, via):
    """deleted_target checkpointed by `crfs checkpoint --via VIA`, restarted by
    crfs-restart: the unlinked file (content, mode 0751, owner 1234:567, mtime, position 5,
    its dup sharing the offset), the memfd (name, bytes, position), the deleted and the live
    symlink held O_PATH, the namespace file and the removed cwd (with an fd on it: the
    same directory) pass the program's own checks; /proc shows the same links for them (the unlinked file and symlink under a
    new name in the same directory), and nothing is left in the directory."""
    result = _deleted(guest)
    one = result[via]
    assert one["checkpoint"]["rc"] == 0, one["checkpoint"]
    assert one["restart"]["errno"] == 0, one["restart"]
    lines = one["lines"]
    assert lines[0] == "ready" and lines[-1] == "done", lines
    assert lines[1:-1] == [f"{name}=ok" for name in DELETED_CHECKS], lines
    assert one["exit"] == "exited 0", one["exit"]
    before, after = one["before"], one["after"]
    for fd in ("12", "14", "15"):
        assert after[fd][0] == before[fd][0], (fd, before[fd], after[fd])
    for fd in ("10", "13"):
        assert after[fd][0].startswith("/tmp/crfs-del/") and after[fd][0].endswith(
            " (deleted)"), after[fd]
    assert after["10"][1:] == before["10"][1:] and after["11"] == after["10"]
    assert result["leftovers"] == []


@pytest.mark.parametrize("label, err, reason", [
    ("size_lies", "EINVAL", "deleted file: BUFFER of 23 bytes, size 24"),
    ("size_huge", "EINVAL", "deleted file of 1099511627776 bytes, at most 67108864"),
    ("mode_fifo", "EINVAL", "st_mode 010644 is not a file, directory or symlink"),
    ("mode_bits", "EINVAL", "st_mode 01100644 is not a file, directory or symlink"),
    ("dir_with_bytes", "EINVAL", "deleted directory with 8 bytes"),
    ("dir_gone", "ENOENT", "fd 10: /tmp/crfs-dex/gone (deleted): its directory is gone"),
    ("symlink_nul", "EINVAL", "fd 13: /tmp/crfs-del/gone-link (deleted): a symlink target "
                              "with a NUL"),
    ("owner_unmapped", "EINVAL", "deleted file: owner 4294967295:"),
    ("foreign_ns", "EXDEV", ": not the caller's namespace"),
    ("cwd_gone", "ENOENT", "cwd /tmp/crfs-del/cwd (xeleted) cannot be looked up (errno 2)"),
])
def test_deleted_records_that_lie_are_refused(guest, label, err, reason):
    """The ptrace image corrupted one record at a time: RESTART refuses it with its errno
    and a reason naming what is wrong, and the caller is left intact."""
    refused = _deleted(guest)["refused"][label]
    assert refused["errno"] == err, refused
    assert reason in refused["msg"], refused


def test_deleted_things_are_made_only_where_the_task_may(guest):
    """The target run by uid 1000 and restarted by root (as uid 1000): once its deleted
    file's directory is root's 0755, recreating the file is refused with EACCES naming
    it; once its cwd's parent is too, the cwd is refused (it comes first). Nothing is
    left behind."""
    user = _deleted(guest)["user"]
    assert user["checkpoint"]["rc"] == 0, user["checkpoint"]
    refused = user["file_dir_locked"]
    assert refused["errno"] == "EACCES", refused
    assert refused["msg"] == ("fd 10: /tmp/crfs-del-u/locked/gone (deleted): the task may "
                              "not make or chown it"), refused
    refused = user["cwd_dir_locked"]
    assert refused["errno"] == "EACCES", refused
    assert "cwd /tmp/crfs-del-u/cwd (deleted) cannot be made again (errno 13)" in \
        refused["msg"], refused
    assert user["leftovers"] == []


# Step pipes (tests/guest_pipes.py, issue #11): a pipe whose other end no process has, and
# pipes larger than 64 KiB, from both checkpointers (kmod/crfs_files.c, crfs-restart).


def _pipes(guest):
    result = _report(guest)["steps"]["pipes"]
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_pipes_restart_with_their_size_and_without_absent_ends(guest, way):
    """pipes_target checkpointed `--via WAY` and restarted by crfs-restart: its read end
    whose writer no process had reads its 10 bytes then EOF, the 1 MiB pipe (F_SETPIPE_SZ)
    is 1 MiB again with its 300000 bytes, the 256 KiB pipe without writer gives its 100000
    bytes then EOF, the write end without reader gets EPIPE (the program's own checks)."""
    result = _pipes(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert result["restart"]["errno"] == 0, result["restart"]
    assert result["exit"] == "exited 3", result["exit"]
    assert result["lines"][-1] == "pipes=ok", result["lines"][-3:]


def test_both_checkpointers_write_the_same_pipe_state(guest):
    """pipe_flags and pipe_size_log2 of each pipe FILE, fds 3-7 in order: NO_WRITER 2 and
    64 KiB; 1 MiB twice; NO_WRITER and 256 KiB; NO_READER 1 and 64 KiB; the same from the
    ptrace checkpointer and the module."""
    result = _pipes(guest)
    want = [[2, 16], [0, 20], [0, 20], [2, 18], [1, 16]]
    assert result["ptrace"]["pipe_state"] == want
    assert result["kernel"]["pipe_state"] == want


def test_pipe_records_that_lie_are_refused(guest):
    """CHECK of the ptrace image with a pipe FILE made wrong, and RESTARTs that must fail:
    errno and reason, nothing changed (no WARN or Oops: dmesg is checked at rmmod)."""
    result = _pipes(guest)
    expected = {
        "flags_unknown": "pipe_flags 0x6",
        "no_reader_but_read_end": "pipe_flags 0x1: no process had this end",
        "size_log2_40": "pipe_size_log2 40",
        "size_log2_small": "PIPE_BUF of 100000 bytes, at most 4096",
        "ends_differ": "its ends differ in pipe_flags or size",
    }
    for label, reason in expected.items():
        got = result["records"][label]
        assert got["errno"] == "EINVAL" and reason in got["msg"], (label, got)
    refused = result["refused"]
    assert refused["writer_somewhere"]["errno"] == "EOPNOTSUPP", refused
    assert "a pipe whose other end is not in the process" in str(refused["writer_somewhere"])
    assert refused["big_not_handed"]["errno"] == "EOPNOTSUPP", refused
    assert "a pipe of 1048576 bytes not handed in" in str(refused["big_not_handed"])
    assert refused["size_2g"]["errno"] == "EINVAL", refused
    assert "F_SETPIPE_SZ of 2^31 bytes" in str(refused["size_2g"]), refused


# --------------------------------------------------------------------------- UNIX sockets
# Step unix (tests/guest_unix.py): socketpairs of the three types with their queued messages
# restored from both checkpointers (kmod/crfs_socket.c, kmod/crfs-restart-unix.h).


def _unix(guest):
    result = _report(guest)["steps"]["unix"]
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_unix_sockets_restart_with_their_queues(guest, way):
    """unix_target checkpointed by `crfs checkpoint --via WAY` and restarted: its own
    checks pass (each end reads the bytes queued for it, the datagrams one by one with
    their boundaries, the shut seqpacket end gives EOF after its two messages and EPIPE on
    send, the socket whose peer had closed reads its bytes then EOF, the pairs are still
    connected), and its fds are sockets again."""
    result = _unix(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert result["restart"]["errno"] == 0, result["restart"]
    assert result["exit"] == "exited 3", result["exit"]
    assert result["lines"][-1] == "unix=ok", result["lines"][-3:]
    assert sorted(result["after"]) == sorted(result["before"])
    assert all(link.startswith("socket:[") for link in result["after"].values())


def test_both_checkpointers_write_the_same_socket_records(guest):
    """The FILE objects of the sockets (objref, type, the objrefs of the socket and of
    its peer) are the same in the module's image as in crfs checkpoint's."""
    result = _unix(guest)
    assert len(result["socks"]) == 8
    assert result["kernel_socks"] == result["socks"]


@pytest.mark.parametrize("label, reason", [
    ("family", "socket of family 2: only AF_UNIX"),
    ("type", "UNIX socket type 3, state 1, shutdown 0"),
    ("shutdown", "shutdown 0x4"),
    ("msgs_many", "5000 messages of 6 bytes"),
    ("data_lies", "BUFFER of 26 bytes for 3 messages of 7"),
    ("addr_long", "addr_len 200"),
    ("peer_self", "UNIX socket objref"),
    ("lengths_lie", "message lengths add to 7, not 6"),
    ("rdonly", "UNIX socket FILE not O_RDWR"),
])
def test_malformed_unix_records_are_refused(guest, label, reason):
    """CHECK of the ptrace image with one field of a CRFS_FILE_UNIX record made wrong:
    EINVAL and the reason."""
    refused = _unix(guest)["records"][label]
    assert refused["errno"] == "EINVAL" and reason in refused["msg"], refused


@pytest.mark.parametrize("label, err, reason", [
    ("pipe_as_socket", "EINVAL", "is not a UNIX socket of type 1"),
    ("dgram_as_stream", "EINVAL", "is not a UNIX socket of type 1"),
    ("queue_empty", "EINVAL", "0 messages of 0 bytes queued, not 1 of 7"),
    ("two_pairs", "EINVAL", "its peer is not objref"),
    ("one_end", "EINVAL", "not handed in"),
    ("not_handed_in", "EOPNOTSUPP", "fd 4: a socket not handed in"),
])
def test_unix_sockets_handed_in_that_lie_are_refused(guest, label, err, reason):
    """RESTART_FILES with sockets that do not fit their records (a pipe, a datagram pair
    for a stream pair, a pair without the queued bytes, ends of two different pairs, one
    end of a pair without the other): refused with errno and reason before anything
    changes; crfs-restart -A (nothing handed in): the first socket refuses the restart."""
    refused = _unix(guest)["lying"][label]
    assert refused["errno"] == err and reason in refused["msg"], refused


@pytest.mark.parametrize("mode", ["setsid", "setpgid"])
def test_restart_rebuilds_sessions_and_groups(guest, mode):
    """tree_target whose child made a session (setsid) or a process group (setpgid) of its
    own: restarted, the child again leads its session and group (or its group, in the
    session of its parent), as /proc/PID/stat says; the tree runs to its end."""
    run = _report(guest)["steps"]["tree"]["ids"][mode]
    assert run["before"] == (["self", "self"] if mode == "setsid" else ["self", "other"])
    assert run["restart"]["errno"] == 0, run
    assert run["after"] == run["before"], run
    assert run["exit"] == "exited 3", run
    assert run["survivors"] == [], run


def test_restart_refuses_a_group_it_cannot_rebuild(guest):
    """The TREE's child says a process group no process of the image leads (nor the root's):
    crfs-restart refuses the image with the reason, before it forks; nothing is left."""
    refused = _report(guest)["steps"]["tree"]["bad_pgid"]
    assert refused["errno"] == "EOPNOTSUPP", refused
    assert refused["msg"].startswith("task 1: pid "), refused
    assert " pgid 99999 sid " in refused["msg"], refused
    assert refused["msg"].endswith(": a group with no leader in the image"), refused
    assert refused["survivors"] == [], refused


# --------------------------------------------------------------------------- sockstrict
# Step sockstrict (tests/guest_sockstrict.py): a listener at a path with its unaccepted
# connection, a connect+accept pair, a SEQPACKET pair and a child in seccomp strict mode,
# from both checkpointers (kmod/crfs_socket.c, kmod/crfs-restart-unix.h,
# kmod/crfs_task_state.c, crfs/checkpoint/sockets.py).
SOCK_FILE = {"ptrace": [0o140640, 18943, 58467], "kernel": [0o140640, 18943, 58467],
             "nobody": [0o140640, 65534, 65534]}


def _sockstrict(guest):
    result = _report(guest)["steps"]["sockstrict"]
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("way", ["ptrace", "kernel", "nobody"])
def test_listener_queue_and_strict_child_restart(guest, way):
    """sockstrict_target checkpointed (--tree; `nobody`: run, checkpointed by ptrace and
    restarted as uid 65534) and restarted by crfs-restart: its own checks pass — the socket
    file has its mode and owner, accept() returns the connection that waited and bytes go
    both ways on it and on the accepted pair, whose accepted end has the listener's name
    again (and its peer that peer name), the SEQPACKET messages come one by one, the
    child's /proc status says Seccomp: 1 and it echoes a byte then exits 0."""
    result = _sockstrict(guest)[way]
    assert result["checkpoint"]["rc"] == 0, result["checkpoint"]
    assert result["seccomp_records"] == 1
    assert result["restart"]["errno"] == 0, result["restart"]
    assert result["file"] == SOCK_FILE[way]
    assert result["exit"] == "exited 3", (result["exit"], result["lines"][-3:])
    assert result["lines"][-2:] == ["seccomp=1", "sockstrict=ok"], result["lines"][-3:]
    assert sorted(result["after"]) == sorted(result["before"])
    assert all(link.startswith("socket:[") for link in result["after"].values())


def test_a_root_restart_binds_with_the_tasks_ids_and_groups(guest):
    """Root restarts nobody's image (nobody, group 100), whose socket file sits in a
    directory only group 100 may write: crfs-restart makes it with the task's fs ids and
    groups, the file is nobody's again, and the program's own checks pass."""
    result = _sockstrict(guest)["nobody_by_root"]
    assert result["restart"]["errno"] == 0, result["restart"]
    assert result["file"] == [0o140640, 65534, 65534]
    assert result["exit"] == "exited 3", (result["exit"], result["lines"][-3:])
    assert result["lines"][-2:] == ["seccomp=1", "sockstrict=ok"], result["lines"][-3:]


def test_both_checkpointers_write_the_same_listener_records(guest):
    """The listener (state 10, its file's mode and owner), the unaccepted connection
    (flags CRFS_UNIX_ICON, peer_objref its listener's) and the pairs: the same records from
    the module's CHECKPOINT as from crfs checkpoint."""
    result = _sockstrict(guest)
    socks = result["ptrace"]["socks"]
    assert [v for v in socks.values() if v[0] == 10] == [
        [10, 0, socks_listener(socks), 0, 0o140640, 18943, 58467]]
    icon = [v for v in socks.values() if v[1] == 1]
    assert len(icon) == 1 and icon[0][3] == socks_listener(socks)
    assert sorted(result["kernel"]["socks"].values()) == sorted(socks.values())


def socks_listener(socks):
    return [v[2] for v in socks.values() if v[0] == 10][0]


@pytest.mark.parametrize("way, reason", [
    ("ptrace", "bytes sent into a connection not accepted yet are not kept"),
    ("kernel", "bytes sent into a UNIX connection not accepted yet"),
])
def test_bytes_sent_into_an_unaccepted_connection_are_refused(guest, way, reason):
    """Bytes the client sent before the listener accepted sit in the embryo socket, which no
    fd reaches: both checkpointers refuse, with the reason."""
    result = _sockstrict(guest)["dirty"][way]
    assert result["rc"] != 0 and reason in result["stderr"], result


@pytest.mark.parametrize("label, reason", [
    ("flags_unknown", "flags 0x3"),
    ("mode_not_socket", "mode 0100640"),
    ("listener_peer", "UNIX socket state 10, flags 0"),
    ("icon_listening", "UNIX socket state 10, flags 0x1"),
    ("icon_queue", "flags 0x1"),
    ("seccomp_filter", "seccomp filter mode (2) is not restored"),
    ("seccomp_mode_9", "seccomp mode 9"),
])
def test_malformed_listener_and_seccomp_records_are_refused(guest, label, reason):
    """CHECK of the ptrace image with one field made wrong: EINVAL and the reason."""
    refused = _sockstrict(guest)["records"][label]
    assert refused["errno"] == "EINVAL" and reason in refused["msg"], refused


@pytest.mark.parametrize("label, reason", [
    ("listener_not_listening", "not listening at its address"),
    ("listener_elsewhere", "not listening at its address"),
    ("icon_a_pair", "not a connection waiting on listener objref"),
])
def test_listener_sockets_handed_in_that_lie_are_refused(guest, label, reason):
    """RESTART_FILES with a socket that does not listen, one listening at another address,
    a socketpair end for the unaccepted connection: EINVAL and the reason."""
    refused = _sockstrict(guest)["lying"][label]
    assert refused["errno"] == "EINVAL" and reason in refused["msg"], refused


@pytest.mark.parametrize("label, err, reason", [
    ("relative_path", "EOPNOTSUPP", "a listener not at an absolute path"),
    ("icon_without_listener", "EINVAL", "no listener objref"),
    ("path_taken", "EEXIST", "not bound at its address"),
])
def test_restarter_refuses_listeners_it_cannot_make(guest, label, err, reason):
    """crfs-restart, before it asks the kernel: a listener bound to a relative path, an
    unaccepted connection whose peer is no listener, a path a regular file holds (left
    alone): its errno and reason, stage unix-sockets."""
    result = _sockstrict(guest)["restarter"]
    refused = result[label]
    assert refused["errno"] == err and reason in refused["msg"], refused
    assert refused["stage"] == "unix-sockets", refused
    assert result["path_taken_kept"] == "not a socket\n"


def test_a_non_root_restart_never_chowns_to_other_ids(guest):
    """As nobody, an image whose socket file belongs to 18943:58467: the chown is the
    restarter's own, refused by the kernel: EPERM and the reason, nothing restarted."""
    refused = _sockstrict(guest)["chown"]
    assert refused["errno"] == "EPERM", refused
    assert "its file not given to uid 18943" in refused["msg"], refused


def test_an_unprivileged_ptrace_checkpoint_of_a_strict_task_says_why(guest):
    """crfs checkpoint --via ptrace as nobody, of nobody's target whose child is in strict
    mode: seizing it with PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN, so it is refused
    with the reason (the syscalls it would inject would kill the child)."""
    result = _sockstrict(guest)["unprivileged"]
    assert "is in seccomp mode 1" in result["msg"], result
    assert "PTRACE_O_SUSPEND_SECCOMP (CAP_SYS_ADMIN" in result["msg"], result


def test_a_root_restart_chowns_only_as_the_task_could(guest):
    """Root restarts nobody's image whose socket file says 18943:58467: crfs-restart binds,
    chowns and chmods with nobody's fs ids (CAP_CHOWN dropped), so the chown is refused:
    EPERM and the reason, nothing restarted."""
    refused = _sockstrict(guest)["chown_as_task"]
    assert refused["errno"] == "EPERM", refused
    assert "its file not given to uid 18943" in refused["msg"], refused


def test_a_restarter_under_a_seccomp_filter_may_not_restore_strict_mode(guest):
    """crfs-restart run under a seccomp filter: RESTART of the strict child is refused (its
    filter would be dropped): EPERM and the reason."""
    refused = _sockstrict(guest)["filtered"]
    assert refused["errno"] == "EPERM", refused
    assert "the caller is in seccomp mode 2 itself" in refused["msg"], refused


# --------------------------------------------------------------------------- POSIX timers
# Step timers (tests/guest_timers.py): tests/c/timers_target.c's four POSIX timers captured
# by both checkpointers (CRFS_HDR_POSIX_TIMER) and made again by crfs-restart before RESTART
# (kmod/crfs_timers.c, kmod/crfs-restart-timers.h).

# (id, clock, signo, notify, pending) of A (MONOTONIC, SIGUSR1), B (REALTIME, SIGEV_NONE),
# C (BOOTTIME, SIGEV_THREAD_ID SIGRTMIN+2, fired, its signal queued), D (TAI, disarmed)
TIMERS = [(3, 1, 10, 0, 0), (5, 0, 0, 1, 0), (6, 7, 36, 4, 1), (7, 11, 14, 0, 0)]


def _timers(guest):
    return _report(guest)["steps"]["timers"]


def _timer_lines(lines):
    """{id: (value_ms, interval_ms)} of the restored program's "timer" lines."""
    out = {}
    for line in lines:
        if line.startswith("timer "):
            _, tid, value, interval = line.split()
            out[int(tid)] = (int(value.split("=")[1]), int(interval.split("=")[1]))
    return out


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_posix_timers_are_captured_and_restored(guest, way):
    """Checkpointed by `crfs checkpoint --via WAY --kill`: one POSIX_TIMER per timer, by id,
    each with its clock, signal and notify; restarted by crfs-restart: /proc/PID/timers as
    before (ids with their gaps, signals and values, notify targets, clocks); timer_gettime
    gives A less than its 100 s left and its 7 s interval, B (SIGEV_NONE) less than its
    50 s, C and D disarmed; a new timer gets id 8; the worker finds C's signal queued once,
    with SI_TIMER, C's id and value."""
    result = _timers(guest)[way]
    ck = result["checkpoint"]
    assert ck["rc"] == 0, ck
    assert [(t["it_id"], t["clockid"], t["signo"], t["notify"], t["flags"])
            for t in ck["timers"]] == TIMERS, ck["timers"]
    assert ck["timers"][0]["sigev_value"] == 0x1234 and ck["timers"][0]["interval_ns"] == 7e9
    assert ck["timers"][2]["value_ns"] == 1 and ck["timers"][3]["value_ns"] == 0
    restored = result["restart"]
    assert restored["errno"] == "restored", restored
    assert restored["proc_timers"] == ck["proc_timers"], restored
    values = _timer_lines(restored["lines"])
    assert 0 < values[3][0] <= ck["timers"][0]["value_ns"] // 10**6 and values[3][1] == 7000
    assert 0 < values[5][0] <= ck["timers"][1]["value_ns"] // 10**6 and values[5][1] == 0
    assert values[6] == (0, 0) and values[7] == (0, 0), values
    assert restored["lines"][4:] == ["next 8", "queued n=1 code=-2 timerid=6 value=abcdef",
                                     "term"], restored
    assert restored["rc"] == 0, restored


def test_posix_timers_restored_by_their_own_unprivileged_user(guest):
    """nobody's timers_target, checkpointed by root through ptrace and restarted by nobody
    (a second uid, who may not choose pids: the program gets new ones): the same timers
    come back but for their notify targets, the program runs as nobody and carries on."""
    result = _timers(guest)["nobody"]
    ck = result["checkpoint"]
    assert ck["rc"] == 0, ck
    assert [(t["it_id"], t["clockid"], t["signo"], t["notify"], t["flags"])
            for t in ck["timers"]] == TIMERS, ck["timers"]
    restored = result["restart"]
    assert restored["errno"] == "restored", restored
    assert [t[:2] + t[3:] for t in restored["proc_timers"]] == \
        [t[:2] + t[3:] for t in ck["proc_timers"]], restored
    assert restored["uid"] == ["65534"] * 4, restored
    assert restored["lines"][4:] == ["next 8", "queued n=1 code=-2 timerid=6 value=abcdef",
                                     "term"], restored
    assert restored["rc"] == 0, restored


@pytest.mark.parametrize("way", ["ptrace", "kernel"])
def test_posix_timers_restored_with_new_pids(guest, way):
    """crfs-restart -N (new pids): the timers are the same but for the notify targets, and
    C's signal, re-armed to the thread that restored the worker, is seen once by it."""
    result = _timers(guest)[way]
    restored = result["new_pids"]
    assert restored["errno"] == "restored", restored
    assert [t[:2] + t[3:] for t in restored["proc_timers"]] == \
        [t[:2] + t[3:] for t in result["checkpoint"]["proc_timers"]], restored
    assert restored["lines"][4:] == ["next 8", "queued n=1 code=-2 timerid=6 value=abcdef",
                                     "term"], restored


@pytest.mark.parametrize("label, message", [
    ("clock", "timer 3: clock 99 (REALTIME, MONOTONIC, BOOTTIME or TAI)"),
    ("cpu_clock", "timer 3: clock -6 (REALTIME, MONOTONIC, BOOTTIME or TAI)"),
    ("notify", "timer 3: notify 2"),
    ("signo", "timer 3: signo 65"),
    ("signo_zero", "timer 3: signo 0"),
    ("thread_without_tid", "timer 6: notify_tid 0 with notify 4"),
    ("tid_without_thread", "timer 3: notify_tid 5 with notify 0"),
    ("id_order", "timer id 3 after 3"),
    ("negative_id", "timer id -1 after -1"),
    ("flags", "timer 3: flags 0x2"),
    ("pending_none", "timer 5: flags 0x1"),
    ("value", "timer 3: value 9223372036854775808, interval 7000000000, overrun 0"),
    ("interval", "timer 3: value "),
    ("overrun", "timer 3: value "),
    ("too_many", "more than 1024 POSIX timers"),
    ("in_a_thread", "POSIX_TIMER not after its process's SIGNAL"),
])
def test_malformed_posix_timer_is_refused(guest, label, message):
    """One POSIX_TIMER field of the ptrace image made wrong, 1021 more records (1025), or one
    in the worker thread's records: CHECK refuses it at copy-in with EINVAL, the record
    type and the reason."""
    refused = _timers(guest)["refusals"][label]
    assert refused["errno"] == "EINVAL" and refused["type"] == 8024, refused
    assert refused["msg"].startswith(message), refused


def test_restart_without_the_timers_is_refused(guest):
    """crfs-restart -T makes none of the image's timers: RESTART refuses the image before
    anything changes, as the caller does not have them."""
    refused = _timers(guest)["refusals"]["no_timers_made"]
    assert refused["errno"] == "EINVAL", refused
    assert "the image has 4 POSIX timers, the caller 0" in refused["msg"], refused


def test_queued_timer_signal_without_its_pending_timer_is_refused(guest):
    """C's SI_TIMER siginfo queued to the worker, C not marked pending: refused."""
    refused = _timers(guest)["refusals"]["not_pending"]
    assert refused["errno"] == "EOPNOTSUPP", refused
    assert refused["msg"].endswith("a POSIX timer's pending signal 36 is not restored: no "
                                   "pending timer 6 in the image"), refused


@pytest.mark.parametrize("way, message", [
    ("ptrace", "timer 8 on clock -6 (only CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, "
               "CLOCK_TAI are restored)"),
    ("kernel", "timer 8 (clock -6, notify 0) is not checkpointed"),
])
def test_cpu_time_timer_is_not_checkpointed(guest, way, message):
    """timers_target with a CLOCK_PROCESS_CPUTIME_ID timer too: both checkpointers refuse
    it with the reason, and write no image."""
    ck = _timers(guest)[f"cpu_{way}"]
    assert ck["rc"] != 0 and message in ck["stderr"], ck
    assert "timers" not in ck, ck


@pytest.mark.parametrize("label, message", [
    ("wrong_signal", "timer 3 (clock 1, notify 0, signo 10): the caller's is 3 (clock 1, "
                     "notify 0, signo 12)"),
    ("one_more", "the image has 3 POSIX timers, the caller more"),
])
def test_restart_refuses_a_caller_with_other_timers(guest, label, message):
    """A single-threaded image with timers 3, 5, 7, restarted by a forked child that made
    timers of its own first: one of another signal, or one more than the image's, and
    RESTART refuses it with EINVAL before anything changes."""
    refused = _timers(guest)["callers"][label]
    assert refused == {"errno": "EINVAL", "msg": message}, refused


def test_timers_step_leaves_nothing_running(guest):
    assert _timers(guest)["left"] == []


# --------------------------------------------------------------------------- lazy restart
# Step lazy (tests/guest_lazy.py, issue #14): crfs-restart --lazy, pages through userfaultfd
# from the restarter (kmod/crfs_lazy.c, kmod/crfs-restart-lazy.h).


def _lazy(guest, case):
    result = _report(guest)["steps"]["lazy"]
    assert "error" not in result, result["error"]
    return result[case]


def _lazy_ran(run, line):
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    assert run["first"]["errno"] == 0 and run["first"]["stage"] == "restored", run["first"]
    assert line in run["lines"], run["lines"][-5:]
    assert run["exit"] == "exited 3", run


@pytest.mark.parametrize("case", ["check", "eager"])
def test_lazy_restart_brings_every_byte_back(guest, case):
    """lazy_target's 64 MiB heap (every 16th page a hole) restarted with --lazy (and, as a
    reference, without): every byte as written, the holes zeros; the lazy server reports
    the program resident once every page of the image is in."""
    run = _lazy(guest, case)
    _lazy_ran(run, "heap=ok")
    if case == "check":
        second = run["second"]
        assert second["errno"] == 0 and second["stage"] == "resident", second
        pages = int(second["reason"].split(": ")[1].split()[0])
        assert pages >= 64 * 256 * 15 // 16, second


def _by_thread_2(report):
    """From a "resident" reason: the pages the server's second streaming thread copied."""
    return int(report["reason"].split(" by thread 2")[0].rsplit(", ", 1)[1])


def test_lazy_restart_streams_with_two_threads(guest):
    """The server streams with two threads (the second copies the span after the serving
    thread's), and with one when $CRFS_LAZY_STREAMS=1: every byte back either way."""
    two, one = _lazy(guest, "check"), _lazy(guest, "one_stream")
    _lazy_ran(one, "heap=ok")
    assert one["second"]["stage"] == "resident", one["second"]
    assert _by_thread_2(one["second"]) == 0, one["second"]
    assert _by_thread_2(two["second"]) > 0, two["second"]


def test_lazy_restart_serves_two_threads_faulting_at_once(guest):
    """Two threads of the restarted program compare the two halves of the heap at once:
    both fault on pages still to come, both get them."""
    _lazy_ran(_lazy(guest, "threads"), "threads=ok")


def test_lazy_restart_keeps_anonymous_semantics(guest):
    """At its first instruction after the restart, the program drops 2 MiB with
    MADV_DONTNEED, unmaps 2 MiB and moves 2 MiB with mremap, all at the end of its heap
    (the last the server streams): not resident yet, and afterwards zeros, unmapped and
    the pattern at the new place; the rest intact."""
    run = _lazy(guest, "madvise")
    _lazy_ran(run, "madvise=ok")
    before = next(x for x in run["lines"] if x.startswith("before "))
    dontneed, remap = (int(x.split("=")[1]) for x in before.split()[1:])
    assert dontneed < 512 or remap < 512, before     # they had not all arrived


def test_lazy_restart_survives_its_image_deleted(guest):
    """The image unlinked as soon as the program runs: the server keeps it open (its fd
    says "(deleted)"), every page still comes; /proc/PID/maps is the original's."""
    run = _lazy(guest, "deleted")
    _lazy_ran(run, "heap=ok")
    during = run["during"]
    assert any(x.endswith("deleted.img (deleted)") for x in during["server_fds"]), during
    assert during["second"]["stage"] == "resident", during["second"]
    assert [m for m in run["maps_before"] if m[2] not in ("[vvar]", "[vdso]")] == \
        [m for m in during["maps_after"] if m[2] not in ("[vvar]", "[vdso]")]


def test_lazy_restart_program_dies_with_its_server(guest):
    """The server killed while pages are still to come: the program is killed too (the
    module kills it when the server's /dev/crfs file goes), nothing hangs."""
    run = _lazy(guest, "killed")
    assert run["first"]["stage"] == "restored", run["first"]
    assert run["during"]["program_ended"], run["during"]
    assert run["during"]["second"].get("eof"), run["during"]      # never resident
    assert "heap=ok" not in run["lines"], run["lines"][-5:]
    assert run["exit"] == "killed by SIGKILL", run


def test_lazy_restart_serves_a_fork_before_resident(guest):
    """The program forks as soon as it runs and its child forks too: each of the three
    checks every byte of its heap, pages still to come included (the server follows the
    forks: UFFD_FEATURE_EVENT_FORK) and nobody sees zeros where the image has data."""
    run = _lazy(guest, "fork")
    _lazy_ran(run, "heap=ok")
    for line in ("child heap=ok", "grandchild heap=ok", "fork=ok"):
        assert line in run["lines"], run["lines"][-8:]
    second = run["second"]
    assert second["stage"] == "resident" and second["reason"].endswith(" 2 forks"), second


def test_lazy_restart_fork_dies_with_the_server(guest):
    """The program forked before its pages were in; the server is killed: the module kills
    the program and the child (a descendant of the server, its subreaper), nothing hangs,
    nothing is left."""
    run = _lazy(guest, "forkkilled")
    during = run["during"]
    assert during["child"] and during["program_ended"] and during["child_ended"], during
    assert during["second"].get("eof"), during
    assert "heap=ok" not in run["lines"], run["lines"][-5:]
    assert run["exit"] == "killed by SIGKILL" and run["survivors"] == [], run


def test_lazy_restart_through_a_mount_says_when_resident(guest):
    """`cp` into restart/ of a mount with -o lazy: close(2) succeeds once the program runs;
    its status says running, memory coming in (or already resident), then `memory:
    resident (...)`; the program, let go, finds every byte and exits 3."""
    run = _lazy(guest, "mount")
    assert "error" not in run and run["checkpoint"]["rc"] == 0, run
    assert run["cp"]["rc"] == 0, run
    assert "state: running" in run["at_close"], run["at_close"]
    assert any(x in run["at_close"] for x in ("memory: coming in (lazy)",
                                              "memory: resident (")), run["at_close"]
    assert "state: running" in run["memory"] and "memory: resident (" in run["memory"], run
    assert "state: exited 3" in run["ended"] and "memory: resident (" in run["ended"], run
    assert "heap=ok" in run["lines"] and run["survivors"] == [], run


def test_lazy_restart_through_a_mount_shows_a_page_server_failure(guest):
    """The daemon's page server fails (the test hook CRFS_LAZY_TEST=eio of crfs-restart):
    restart/NAME.status says so, the program is killed, nothing is left."""
    run = _lazy(guest, "mount_eio")
    assert "error" not in run and run["cp"]["rc"] == 0, run
    assert "memory: page server failed: program killed (Input/output error)" in \
        run["memory"], run["memory"]
    assert "state: killed by SIGKILL" in run["ended"], run["ended"]
    assert "heap=ok" not in run["lines"] and run["survivors"] == [], run


def test_lazy_restart_serves_a_tree(guest):
    """A tree of four processes (the program, two children, a grandchild), each with a
    heap of its own pattern, restarted --lazy: each process has its own userfaultfd,
    served by the one server; each checks every byte at once; resident reported once
    every page of the four is in; nothing left."""
    run = _lazy(guest, "tree")
    _lazy_ran(run, "tree=ok")
    for n in range(4):
        assert f"tree {n} heap=ok" in run["lines"], run["lines"][-10:]
    second = run["second"]
    assert second["stage"] == "resident" and second["reason"].endswith(", 4 processes"), second
    pages = int(second["reason"].split(": ")[1].split()[0])
    assert pages >= 4 * 32 * 256 * 15 // 16, second
    assert run["survivors"] == [], run


def test_lazy_restart_of_a_tree_is_served_by_its_server_only(guest):
    """The tree restored and waiting: its four processes are below the server; a process
    above the server (an ancestor of the tree, but not its server) is refused the ranges
    of a child (EPERM); let go, every process finds its heap intact."""
    run = _lazy(guest, "treeidle")
    _lazy_ran(run, "tree=ok")
    during = run["during"]
    assert len(during["tree"]) == 4 and during["not_server"] == "EPERM", during
    assert during["second"]["stage"] == "resident", during
    assert run["survivors"] == [], run


def test_lazy_restart_tree_dies_with_its_server(guest):
    """The server of a tree killed while pages are still to come in its processes: every
    process of the tree ends (the module kills the server's descendants before any
    userfaultfd goes), nothing hangs, nothing is left."""
    run = _lazy(guest, "treekilled")
    during = run["during"]
    assert len(during["tree"]) == 4 and all(during["ended"].values()), during
    assert during["second"].get("eof"), during
    assert "tree=ok" not in run["lines"], run["lines"][-5:]
    assert run["exit"] == "killed by SIGKILL" and run["survivors"] == [], run


def test_lazy_restart_tree_outlives_its_ended_processes(guest):
    """The children and grandchild of the tree end as soon as they run and are reaped, the
    program goes on: the server finishes (DONE forgets the ended processes, whose pids can
    no longer be named), and the program is not killed when the server lets go."""
    run = _lazy(guest, "treegone")
    _lazy_ran(run, "tree=ok")
    during = run["during"]
    assert during["second"]["stage"] == "resident", during
    assert during["program_running"], during
    assert "tree 0 heap=ok" in run["lines"] and run["survivors"] == [], run


def test_lazy_restart_tree_dies_with_a_server_that_dies_before_go(guest):
    """The server of a tree dies after it asked every process's ranges, before any GO (test
    hook "exit"): the module kills the four processes at the release of the server's
    /dev/crfs file (RANGES made them its own), not after lazy_timeout (60 s); nothing ran,
    nothing is left."""
    run = _lazy(guest, "server_tree_exit")
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    assert run["first"].get("eof") and run["exit"] == "exited 7", run
    assert not any("heap=" in x for x in run["lines"]), run["lines"][-5:]
    assert run["survivors"] == [], run     # looked for 30 s at most: lazy_timeout is 60 s


def test_lazy_restart_refuses_a_tree_beyond_its_bound(guest):
    """The server serves a bounded number of userfaultfds: a tree of more processes (four,
    with the bound at two through the test hook "max2") is refused before anything is
    forked, E2BIG, stage lazy."""
    run = _lazy(guest, "treemax")
    first = run["first"]
    assert first.get("errno") == errno.E2BIG and first["stage"] == "lazy", run
    assert "more processes than --lazy serves" in first["reason"], first
    assert run["exit"] == "exited 1" and run["survivors"] == [], run


def test_lazy_restart_without_userfaultfd_rights_is_refused(guest):
    """crfs-restart --lazy run by nobody while vm.unprivileged_userfaultfd is 0: refused
    before RESTART, EPERM, stage lazy, saying which sysctl would allow it."""
    refused = _lazy(guest, "nobody")
    assert refused.get("errno") == errno.EPERM and refused["stage"] == "lazy", refused
    assert "vm.unprivileged_userfaultfd=1" in refused["reason"], refused


def test_lazy_restart_without_ptrace_capability_is_refused(guest):
    """As nobody with vm.unprivileged_userfaultfd=1: the userfaultfd is made, but following
    forks (UFFD_FEATURE_EVENT_FORK) needs CAP_SYS_PTRACE: refused before RESTART, EPERM,
    stage lazy, rather than let a fork see zeros."""
    refused = _lazy(guest, "nobody_fork")
    assert refused.get("errno") == errno.EPERM and refused["stage"] == "lazy", refused
    assert "CAP_SYS_PTRACE" in refused["reason"], refused


def test_lazy_ioctl_refuses_wrong_requests(guest):
    """CRFS_IOC_LAZY: ESRCH for a pid no lazy restore waits for, EINVAL for an unknown op or
    a reserved field set, EBADF/EINVAL for a GO whose fd is closed / not a userfaultfd; a
    process other than the restored program's parent gets EPERM."""
    assert _lazy(guest, "arguments") == {
        "ranges_not_waiting": "ESRCH", "done_not_waiting": "ESRCH", "unknown_op": "EINVAL",
        "reserved": "EINVAL", "go_closed_fd": "EBADF", "go_not_uffd": "EINVAL",
        "fork_closed_fd": "EBADF", "fork_not_uffd": "EINVAL", "fork_not_waiting": "ESRCH"}
    assert _lazy(guest, "deleted")["during"]["not_parent"] == "EPERM"


@pytest.mark.parametrize("label", ["static", "dynamic"])
def test_lazy_restart_continues_a_real_program(guest, label):
    """restore_target checkpointed by the CLI, restarted with --lazy: as after an eager
    restart, its count, heap, written file page, shared page, registers and vDSO clock
    carry on to its limit."""
    run = _lazy(guest, "targets")[label]
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    restart = run["restart"]
    assert (restart["errno"], restart["stage"]) == (0, "restored"), restart
    _continues(run["checkpoint"]["before"], restart["after"], restart["exit"])


def test_lazy_restart_kills_a_program_that_forks_beyond_the_limit(guest):
    """With pages coming on fault only (test hook "nostream"), the program forks 300 times
    before touching its heap: the module refuses the 257th child's userfaultfd (ENOSPC,
    CRFS_LAZY_MAX_FORKS), the server fails, the program and what it forked are killed;
    no child ran on zeros, nothing is left."""
    run = _lazy(guest, "server_nostream")
    assert run["first"].get("stage") == "restored", run
    assert run["second"]["stage"] == "lazy" and run["second"]["errno"] == errno.ENOSPC, run
    assert "forks=ok" not in run["lines"] and "heap=ok" not in run["lines"], run["lines"][-5:]
    assert run["exit"] == "killed by SIGKILL" and run["survivors"] == [], run


@pytest.mark.parametrize("how", ["exit", "late", "unregistered"])
def test_lazy_restart_kills_the_program_when_its_server_fails(guest, how):
    """The server misbehaves ($CRFS_LAZY_TEST, a test hook of crfs-restart): it dies before
    GO (the waiting program is killed, nothing is reported), says GO after the module's
    lazy_timeout (1 s here: the program is killed, the server reports the failure), or
    says GO without registering the ranges (the module's check kills the program before
    its first instruction). Never a program running on zeros; nothing left."""
    run = _lazy(guest, f"server_{how}")
    assert run["checkpoint"]["rc"] == 0, run["checkpoint"]
    assert "heap=ok" not in run["lines"] and "done" not in run["lines"], run["lines"][-5:]
    assert run["survivors"] == [], run
    if how == "exit":
        assert run["first"].get("eof") and run["exit"] == "exited 7", run
    elif how == "late":
        assert run["first"].get("stage") == "lazy" and run["first"]["errno"], run
        assert run["exit"] == "killed by SIGKILL", run
    else:
        assert run["first"].get("stage") == "restored", run
        assert run["exit"] == "killed by SIGKILL", run


# --------------------------------------------------------------------------- exe, memfd
# Step exe_memfd (tests/guest_exe.py): /proc/PID/exe of restored processes (kmod/crfs_exe.c)
# and a memfd opened twice by two processes (one inode, kmod/crfs_deleted.c).

def _exe_memfd(guest):
    result = _report(guest)["steps"]["exe_memfd"]
    assert "error" not in result, result["error"]
    return result


def _by_prefix(lines):
    """{"parent": {...}, "child": {...}} of the target's "WHO key=value ..." lines."""
    out = {}
    for line in lines:
        who, _, rest = line.partition(" ")
        if who in ("parent", "child"):
            out.setdefault(who, {}).update(p.split("=", 1) for p in rest.split())
    return out


@pytest.mark.parametrize("via", ["ptrace", "kernel"])
def test_restart_keeps_exe_and_shares_a_memfd(guest, via):
    """exe_memfd_target's parent (a memfd "hello" at position 1) and child (the same memfd
    opened again through /proc/PPID/fd, read-only, at position 2) checkpointed by
    `crfs checkpoint --via VIA --tree`, restarted by crfs-restart: /proc/PID/exe of both
    names the program again (not crfs-restart); the parent's write of "XYZ" is what the
    child then reads at its own position ("YZ"), both fds on one inode, the child's still
    read-only."""
    result = _exe_memfd(guest)
    one = result[via]
    assert one["checkpoint"]["rc"] == 0, one["checkpoint"]
    assert one["restart"]["errno"] == 0, one["restart"]
    assert one["exe_before"] == result["exe"], one
    assert one["exe"] == result["exe"] and one["child_exe"] == [result["exe"]], one
    assert one["exit"] == "exited 0", one
    seen = _by_prefix(one["lines"])
    assert one["lines"][0] == "ready" and one["lines"][-1] == "done", one["lines"]
    assert "child status=0" in one["lines"], one["lines"]
    parent, child = seen["parent"], seen["child"]
    assert parent["exe"] == child["exe"] == result["exe"], seen
    assert child["read"] == "YZ" and child["acc"] == "0" and child["pos"] == "4", seen
    assert parent["pos"] == "4" and parent["ino"] == child["ino"], seen


@pytest.mark.parametrize("label, err, reason", [
    ("exe_changed", "ESTALE", "/tmp/crfs-exe/exe_memfd_target changed since the checkpoint "
                              "(mtime)"),
    ("exe_not_regular", "EINVAL", "exe /dev/null is not a regular file"),
    ("exe_missing", "ENOENT", "cannot open exe /tmp/crfs-exe/missing"),
    ("exe_noexec", "EACCES", "exe /tmp/crfs-exe/noexec/exe is on a noexec mount"),
    ("exe_not_executable", "EACCES", "exe /tmp/crfs-exe/plain: the task may not execute it"),
    ("exe_busy", "ETXTBSY", "exe /tmp/crfs-exe/exe_memfd_target is open for writing"),
    ("exe_objref_unknown", "EINVAL", "exe_objref 12345 is not a file by name seen before"),
    ("exe_not_by_name", "EINVAL", "is not a file by name seen before"),
    ("inode_on_many_devices", "EINVAL", "deleted files of inode 4242 on 16 devices"),
    ("inode_modes_differ", "EINVAL", "differ in mode or size"),
])
def test_exe_and_inode_records_that_lie_are_refused(guest, label, err, reason):
    """The ptrace image with an exe record inserted (a changed file, a device, a missing
    file, one on a noexec mount, one without exec permission, the program open for writing)
    or exe_objref naming no file by name, or the memfds' identities edited (one inode
    number on 17 devices, two files of one inode with different modes): RESTART refuses it
    with its errno and a reason naming what is wrong."""
    if label == "exe_noexec":
        assert _exe_memfd(guest)["refused"]["noexec_mount"] == 0, "mount -o noexec failed"
    refused = _exe_memfd(guest)["refused"][label]
    assert refused["errno"] == err, refused
    assert reason in refused["msg"], refused


def test_image_without_exe_keeps_the_restarters(guest):
    """MM.exe_objref set to 0 (an older image): restarted as before, /proc/PID/exe names
    crfs-restart, the program runs to its end."""
    no_exe = _exe_memfd(guest)["refused"]["no_exe"]
    assert no_exe["errno"] == 0, no_exe
    assert no_exe["exe"] == "/tmp/crfs-exe/crfs-restart", no_exe
    assert no_exe["exit"] == "exited 0", no_exe


def test_unprivileged_restart_names_only_its_own_program(guest):
    """uid 1000's program restarted by uid 1000 (no capabilities): /proc/PID/exe names it
    again. An exe record naming a set-user-ID copy, a copy with file capabilities, or the
    program without its identity is refused for uid 1000 (EPERM: exec of it would gain
    privilege, or nothing says it is the file) and accepted from root."""
    user = _exe_memfd(guest)["user"]
    assert user["checkpoint"]["rc"] == 0, user["checkpoint"]
    exe = _exe_memfd(guest)["exe"]
    assert user["exe_before"] == exe, user
    assert user["own_exe"] == {"errno": "restored", "exe": exe}, user
    assert user["setcap"] == 0, user["setcap"]
    for label, why in (("suid", "set-user-ID or set-group-ID"),
                       ("capped", "with file capabilities"),
                       ("no_identity", "its identity not recorded")):
        refused = user[f"{label}_by_user"]
        assert refused["errno"] == "EPERM", (label, refused)
        assert why in refused["msg"] and "CAP_CHECKPOINT_RESTORE" in refused["msg"], refused
        named = exe if label == "no_identity" else f"/tmp/crfs-exe/{label}"
        assert user[f"{label}_by_root"] == {"errno": "restored", "exe": named}, (label, user)
