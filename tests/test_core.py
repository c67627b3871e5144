"""tasks/<pid>/core and `crfs core`: ELF cores that readelf accepts and gdb debugs.

Golden images (C writers, i386 and x86_64) check the ELF structure against the model; a real
program compiled with -g checks what gdb shows: the backtrace, registers, a global string and
a counter. That program is checkpointed with crfs.checkpoint when it exists, and is always
also captured through gcore -> model -> ckpt image (tests/gcore_model.py).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from crfs.formats import elf
from crfs.formats.elf import ELF
from crfs.model import registry
from crfs.model.core import CoreFile
from crfs.model.synth import synthetic_image
from gcore_model import gcore, image_from_gcore, notes
from mountfs import CRFS, Mount, errors_in_log

GOLDEN = [("ckpt_golden", None), ("cr_golden", "v4"), ("cpt_golden", None)]
ARCH = {32: "i386", 64: "x86_64"}
NOTE_NAMES = {value: name for name, value in ELF.items() if name.startswith("NT_")}


# --------------------------------------------------------------------------- helpers

def parse_core(data, arch):
    """(phdrs, [note type names]) of a core file's bytes."""
    ehdr = elf.EHDR[arch].parse(data)
    size = elf.PHDR[arch].sizeof()
    phdrs = [elf.PHDR[arch].parse(data[ehdr.e_phoff + i * size:]) for i in range(ehdr.e_phnum)]
    note = next(p for p in phdrs if p.p_type == ELF["PT_NOTE"])
    payload = data[note.p_offset:note.p_offset + note.p_filesz]
    types = [NOTE_NAMES.get(t, hex(t)) for t, _ in notes(payload)]
    return phdrs, types


def readelf_clean(path):
    proc = subprocess.run(["readelf", "-a", "-W", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bad = [line for line in (proc.stdout + proc.stderr).splitlines()
           if "Warning" in line or "Error" in line]
    assert not bad, bad


def gdb(*commands, args=()):
    argv = ["gdb", "-batch", "-nx"]
    for command in commands:
        argv += ["-ex", command]
    proc = subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120)
    return proc.stdout + proc.stderr


def gdb_registers(output):
    """{name: value} from `info registers` lines."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"^(\w+)\s+(0x[0-9a-f]+)\s", line)
        if m:
            found[m.group(1)] = int(m.group(2), 16)
    return found


def regs_file(path):
    return {name: int(value, 16) for name, value in
            (line.split() for line in Path(path).read_text().splitlines())}


def expected_notes(image, task):
    threads = [t for t in image.tasks if t.tgid == task.tgid and t.mm is task.mm
               and t.regs is not None]
    names = {"NT_PRSTATUS", "NT_PRPSINFO"}
    if task.mm.auxv:
        names.add("NT_AUXV")
    if any(v.file for v in task.mm.vmas):
        names.add("NT_FILE")
    fpu = task.fpu
    if fpu is not None and (len(fpu) >= 512 or (image.arch == "i386" and len(fpu) == 112)):
        names.add("NT_PRFPREG")
    if fpu is not None and len(fpu) >= 512 and image.arch == "i386":
        names.add("NT_PRXFPREG")
    if fpu is not None and len(fpu) > 512:
        names.add("NT_X86_XSTATE")
    return names, len(threads)


# --------------------------------------------------------------------------- golden images

@pytest.fixture(scope="module")
def golden_mount(build_c, tmp_path_factory):
    """A mount over the golden images: {name: opened Image}."""
    mount = Mount(tmp_path_factory.mktemp("coregolden"))
    images = {}
    for bits in (32, 64):
        for program, mode in GOLDEN:
            name = f"{program}{'-' + mode if mode else ''}-m{bits}.img"
            subprocess.run([str(build_c(program, bits)), str(mount.store / name)]
                           + ([mode] if mode else []), check=True, capture_output=True)
            images[name] = registry.open_image(mount.store / name)
    mount.mount()
    yield mount, images
    mount.unmount()
    for image in images.values():
        image.close()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def golden_cases():
    return [(f"{program}{'-' + mode if mode else ''}-m{bits}.img", ARCH[bits])
            for bits in (32, 64) for program, mode in GOLDEN]


@pytest.mark.parametrize("name,arch", golden_cases())
def test_golden_core_structure(golden_mount, name, arch):
    mount, images = golden_mount
    image = images[name]
    assert image.arch == arch
    cored = [t for t in image.tasks if t.mm is not None and t.regs is not None]
    assert cored
    for task in cored:
        path = mount / name / "tasks" / str(task.pid) / "core"
        readelf_clean(path)
        data = path.read_bytes()
        assert len(data) == os.stat(path).st_size == CoreFile(image, task).size
        phdrs, types = parse_core(data, arch)
        names, threads = expected_notes(image, task)
        assert set(types) == names
        assert types.count("NT_PRSTATUS") == threads
        loads = [p for p in phdrs if p.p_type == ELF["PT_LOAD"]]
        assert len(loads) == len(task.mm.vmas)
        for load, vma in zip(loads, task.mm.vmas):
            assert (load.p_vaddr, load.p_memsz) == (vma.start, vma.size)
            assert load.p_offset % 4096 == 0
            got = data[load.p_offset:load.p_offset + load.p_filesz]
            assert got == task.mm.read(vma.start, load.p_filesz)


def test_tasks_without_registers_have_no_core(golden_mount):
    mount, images = golden_mount
    for name, image in images.items():
        for task in image.tasks:
            has_core = (mount / name / "tasks" / str(task.pid) / "core").exists()
            assert has_core == (task.mm is not None and task.regs is not None)


@pytest.mark.parametrize("name", ["ckpt_golden-m32.img", "cr_golden-v4-m32.img"])
def test_gdb_loads_i386_golden_core(golden_mount, name):
    mount, images = golden_mount
    task = images[name].tasks[0]
    core = mount / name / "tasks" / str(task.pid) / "core"
    out = gdb("set architecture i386", f"core-file {core}", "info registers")
    assert "is not a core dump" not in out and "Error" not in out, out
    shown = gdb_registers(out)
    for reg in ("eip", "esp", "ebp", "eax"):
        assert shown[reg] == task.regs[reg] & 0xFFFFFFFF, (reg, out)


# --------------------------------------------------------------------------- a real program

class Target:
    """tests/c/core_target.c running until it blocks; its own report of its state."""

    def __init__(self, exe):
        self.exe = exe
        self.proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
        try:
            line = self.proc.stdout.readline().rstrip("\n")
            head, self.a_global = line.split(" a_global=", 1)
            fields = dict(f.split("=", 1) for f in head.split()[1:])
            self.pid = int(fields["pid"])
            self.counter = int(fields["counter"])
        except Exception:
            self.stop()     # never leave the program running behind a failed test
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def checkpoint_with_crfs(target, out):
    from crfs.checkpoint import checkpoint
    checkpoint(target.pid, str(out), fmt="ckpt", tree=False, after="kill")
    return None


def checkpoint_through_gcore(target, out):
    """The same process as a ckpt image built from its gcore; returns the gcore file."""
    path = gcore(target.pid, out.parent / "gcore")
    image = image_from_gcore(path)
    with open(out, "wb") as f:
        registry.dump(image, f, "ckpt")
    image.close()
    return path


@pytest.fixture(scope="module", params=["crfs.checkpoint", "gcore"])
def real_core(request, build_c, tmp_path_factory):
    """(Target, exe, mounted task dir, path of `crfs core` output, gcore path or None)."""
    exe = build_c("core_target", 64)
    root = tmp_path_factory.mktemp("corereal")
    mount = Mount(root)
    target = Target(exe)
    try:
        make = checkpoint_with_crfs if request.param == "crfs.checkpoint" \
            else checkpoint_through_gcore
        gcore_path = make(target, mount.store / "target.img")
    finally:
        target.stop()
    written = root / "cli.core"
    subprocess.run(CRFS + ["core", str(mount.store / "target.img"), str(target.pid),
                           "-o", str(written)], check=True, timeout=120)
    mount.mount()
    yield target, exe, mount / "target.img" / "tasks" / str(target.pid), written, gcore_path
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


@pytest.mark.parametrize("via", ["mount", "cli"])
def test_gdb_on_real_program(real_core, via):
    target, exe, tdir, written, _ = real_core
    core = tdir / "core" if via == "mount" else written
    readelf_clean(core)
    out = gdb("bt", "x/s &a_global", "p counter", args=(exe, core))
    frames = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\w+) \(", out, re.M)
    assert frames[-3:] == ["tick", "run_loop", "main"], out
    assert f'"{target.a_global}"' in out, out
    assert re.search(rf"^\$1 = {target.counter}$", out, re.M), out


def test_gdb_registers_match_regs_file(real_core):
    target, exe, tdir, _, _ = real_core
    names = ["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r12",
             "r15", "eflags", "cs", "ss", "fs_base", "orig_rax"]
    out = gdb(f"info registers {' '.join(names)}", args=(exe, tdir / "core"))
    shown = gdb_registers(out)
    regs = regs_file(tdir / "regs")
    assert {n: shown.get(n) for n in names} == {n: regs[n] for n in names}, out


def test_notes_match_gcore(real_core):
    """Our notes carry what the kernel's would; gdb's gcore adds its own (SIGINFO, TDESC)."""
    _, _, tdir, _, gcore_path = real_core
    if gcore_path is None:
        pytest.skip("compared on the gcore-built image (this one came from crfs checkpoint)")
    ours = parse_core(Path(tdir / "core").read_bytes(), "x86_64")[1]
    theirs = parse_core(Path(gcore_path).read_bytes(), "x86_64")[1]
    assert sorted(ours) == sorted(t for t in theirs if t in NOTE_NAMES.values())


# --------------------------------------------------------------------------- cost of a read

class CountingSource:
    def __init__(self, source):
        self.source = source
        self.calls = []

    def pread(self, offset, length):
        self.calls.append((offset, length))
        return self.source.pread(offset, length)


def test_reading_a_range_reads_only_that_range():
    image = synthetic_image("x86_64", heap_pages=50_000)
    task = image.tasks[0]
    counting = CountingSource(task.mm.source)
    task.mm.source = counting
    core = CoreFile(image, task)
    counting.calls.clear()
    tail = core.read(core.size - 4096, 4096)
    assert len(tail) == 4096
    assert sum(length for _, length in counting.calls) <= 4096
    last = task.mm.vmas[-1]
    assert tail == task.mm.read(last.end - 4096, 4096)
    assert core.read(core.size, 10) == b""


def test_core_of_unknown_pid_fails_in_one_line(tmp_path):
    image = tmp_path / "s.img"
    with open(image, "wb") as out:
        registry.dump(synthetic_image("i386", heap_pages=2), out, "ckpt")
    proc = subprocess.run(CRFS + ["core", str(image), "7", "-o", str(tmp_path / "c")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"{image}: no task 7\n"
    assert not (tmp_path / "c").exists()
    ok = subprocess.run(CRFS + ["core", str(image), "4242", "-o", str(tmp_path / "c")])
    assert ok.returncode == 0
    readelf_clean(tmp_path / "c")
