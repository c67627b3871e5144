"""The kernel module's C declarations agree with crfs's Python ones.

kmod/crfs_image.h (the records the module reads) against the construct structs of
crfs/formats/ckpt.py, and kmod/crfs_ioctl.h (the /dev/crfs ABI) against crfs/kernel.py.
A small C program includes the headers and prints sizeof/offsetof and the constants; a field
missing or misnamed in C fails its compilation.
"""

import ctypes
import json
import subprocess
from pathlib import Path

import pytest
from construct import Struct

from crfs import kernel
from crfs.formats import ckpt as fmt

KMOD = Path(__file__).resolve().parent.parent / "kmod"

# C struct name -> construct declaration
STRUCTS = {
    "ckpt_hdr": fmt.ckpt_hdr,
    "ckpt_const": fmt.ckpt_const,
    "ckpt_hdr_header": fmt.ckpt_hdr_header,
    "ckpt_hdr_header_arch": fmt.ckpt_hdr_header_arch,
    "ckpt_hdr_container": fmt.ckpt_hdr_container,
    "ckpt_hdr_lsm": fmt.ckpt_hdr_lsm,
    "ckpt_hdr_objref": fmt.ckpt_hdr_objref,
    "ckpt_hdr_tree": fmt.ckpt_hdr_tree,
    "ckpt_pids": fmt.ckpt_pids,
    "ckpt_hdr_task": fmt.ckpt_hdr_task,
    "ckpt_hdr_task_objs": fmt.ckpt_hdr_task_objs,
    "ckpt_hdr_thread": fmt.ckpt_hdr_thread,
    "ckpt_hdr_cpu": fmt.ckpt_hdr_cpu,
    "ckpt_hdr_file": fmt.ckpt_hdr_file,
    "ckpt_hdr_file_pipe": fmt.ckpt_hdr_file_pipe,
    "crfs_hdr_file_opaque": fmt.crfs_hdr_file_opaque,
    "ckpt_hdr_file_eventfd": fmt.ckpt_hdr_file_eventfd,
    "crfs_hdr_file_timerfd": fmt.crfs_hdr_file_timerfd,
    "crfs_hdr_file_signalfd": fmt.crfs_hdr_file_signalfd,
    "ckpt_hdr_eventpoll_items": fmt.ckpt_hdr_eventpoll_items,
    "ckpt_eventpoll_item": fmt.ckpt_eventpoll_item,
    "ckpt_hdr_file_table": fmt.ckpt_hdr_file_table,
    "ckpt_hdr_file_desc": fmt.ckpt_hdr_file_desc,
    "ckpt_hdr_mm": fmt.ckpt_hdr_mm,
    "ckpt_hdr_vma": fmt.ckpt_hdr_vma,
    "ckpt_hdr_pgarr": fmt.ckpt_hdr_pgarr,
    "ckpt_hdr_mm_context": fmt.ckpt_hdr_mm_context,
    "ckpt_capabilities": fmt.ckpt_capabilities,
    "ckpt_hdr_cred": fmt.ckpt_hdr_cred,
    "ckpt_hdr_task_creds": fmt.ckpt_hdr_task_creds,
    "ckpt_hdr_user_struct": fmt.ckpt_hdr_user_struct,
    "ckpt_hdr_user_ns": fmt.ckpt_hdr_user_ns,
    "ckpt_hdr_fs": fmt.ckpt_hdr_fs,
    "crfs_hdr_fs_ext": fmt.crfs_hdr_fs_ext,
    "ckpt_sigaction": fmt.ckpt_sigaction,
    "ckpt_hdr_sighand": fmt.ckpt_hdr_sighand,
    "ckpt_rlimit": fmt.ckpt_rlimit,
    "ckpt_hdr_signal": fmt.ckpt_hdr_signal,
    "ckpt_hdr_signal_task": fmt.ckpt_hdr_signal_task,
    "crfs_hdr_sigaltstack": fmt.crfs_hdr_sigaltstack,
    "ckpt_siginfo": fmt.ckpt_siginfo,
    "crfs_hdr_file_id": fmt.crfs_hdr_file_id,
    "crfs_hdr_oom_score_adj": fmt.crfs_hdr_oom_score_adj,
    "crfs_hdr_rseq": fmt.crfs_hdr_rseq,
    "crfs_hdr_seccomp": fmt.crfs_hdr_seccomp,
    "crfs_hdr_task_misc": fmt.crfs_hdr_task_misc,
    "crfs_hdr_posix_timer": fmt.crfs_hdr_posix_timer,
    "crfs_hdr_file_deleted": fmt.crfs_hdr_file_deleted,
    "crfs_hdr_file_unix": fmt.crfs_hdr_file_unix,
    "crfs_hdr_deleted_stat": fmt.crfs_hdr_deleted_stat,
    "crfs_hdr_file_owner": fmt.crfs_hdr_file_owner,
    "ckpt_hdr_tail": fmt.ckpt_hdr_tail,
}

FILE_SUBTYPES = {"ckpt_hdr_file_pipe", "crfs_hdr_file_opaque", "ckpt_hdr_file_eventfd",
                 "crfs_hdr_file_timerfd", "crfs_hdr_file_signalfd", "crfs_hdr_file_deleted",
                 "crfs_hdr_file_unix"}

# Records the module never reads: an incremental image's, which the restart path flattens
# into one complete image first (docs/checkpoint.md).
NOT_IN_MODULE = {"CRFS_HDR_PARENT", "CRFS_HDR_PARENT_PAGES"}
# Python name -> C constant, for the numbers the module uses
CONSTANTS = {
    **{name: name for name in fmt.CKPT_HDR.__members__ if name not in NOT_IN_MODULE},
    **{name: name for name in fmt.CKPT_VMA.__members__},
    "CKPT_ARCH_X86_32": "CKPT_ARCH_X86_32",
    "CKPT_ARCH_X86_64": "CKPT_ARCH_X86_64",
    "CKPT_OBJ_FILE": "CKPT_OBJ_FILE",
    "CKPT_OBJ_MM": "CKPT_OBJ_MM",
    "CKPT_OBJ_FS": "CKPT_OBJ_FS",
    "CKPT_OBJ_SIGHAND": "CKPT_OBJ_SIGHAND",
    "CKPT_OBJ_SIGNAL": "CKPT_OBJ_SIGNAL",
    "CKPT_OBJ_CRED": "CKPT_OBJ_CRED",
    "CKPT_OBJ_USER": "CKPT_OBJ_USER",
    "CKPT_OBJ_USER_NS": "CKPT_OBJ_USER_NS",
    "CKPT_OBJ_GROUPINFO": "CKPT_OBJ_GROUPINFO",
    **{name: name for name in fmt.CKPT_FILE.__members__},
    **{name: name for name in fmt.CRFS_OPAQUE.__members__},
    "CKPT_OBJ_INODE": "CKPT_OBJ_INODE",
    "CKPT_OBJ_FILE_TABLE": "CKPT_OBJ_FILE_TABLE",
    "CHECKPOINT_MAGIC_HEAD": "CHECKPOINT_MAGIC_HEAD",
    "CHECKPOINT_MAGIC_TAIL": "CHECKPOINT_MAGIC_TAIL",
}
PY_CONSTANTS = {**fmt.CKPT_HDR.__members__, **fmt.CKPT_VMA.__members__,
                **fmt.CKPT_ARCH.__members__, **fmt.CKPT_OBJ.__members__,
                **fmt.CKPT_FILE.__members__, **fmt.CRFS_OPAQUE.__members__, **fmt.MAGIC}

# What crfs declares that the module does not (yet): it skips these records by length and
# refuses these file types by number. Not checked against C.
CONSTANTS = {key: value for key, value in CONSTANTS.items() if key not in NOT_IN_MODULE}


def _fields(struct):
    """(name, offset) of the named, non-padding fields of a construct Struct."""
    offset = 0
    for sub in struct.subcons:
        if sub.name and not sub.name.startswith("_"):
            yield sub.name, offset
        offset += sub.sizeof()


def _program():
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "crfs_image.h"',
             '#include "crfs_ioctl.h"', 'int main(void)', '{', 'printf("{");']

    def emit(key, expr, fmt_="%llu"):
        lines.append(f'printf("\\"{key}\\": {fmt_}, ", (unsigned long long)({expr}));')

    common = {field for field, _ in _fields(fmt.ckpt_hdr_file)}
    for name, struct in STRUCTS.items():
        emit(f"sizeof {name}", f"sizeof(struct {name})")
        for field, _ in _fields(struct):
            # FILE subtypes begin with `struct ckpt_hdr_file common` in C
            member = f"common.{field}" if name in FILE_SUBTYPES and field in common else field
            emit(f"{name}.{field}", f"offsetof(struct {name}, {member})")
    for py_name, c_name in CONSTANTS.items():
        emit(f"const {py_name}", c_name)
    emit("const CKPT_PGARR_BATCH", "CKPT_PGARR_BATCH")
    # SIGPENDING: its fixed head (the siginfo array follows it)
    emit("sizeof ckpt_hdr_sigpending", "sizeof(struct ckpt_hdr_sigpending)")
    for field in ("nr_pending", "signal"):
        emit(f"ckpt_hdr_sigpending.{field}", f"offsetof(struct ckpt_hdr_sigpending, {field})")
    # SIGINFO_RAW: its head, then nr_pending kernel_siginfo of CRFS_SIGINFO_SIZE bytes
    emit("sizeof crfs_hdr_siginfo_raw", "sizeof(struct crfs_hdr_siginfo_raw)")
    emit("crfs_hdr_siginfo_raw.nr_pending", "offsetof(struct crfs_hdr_siginfo_raw, nr_pending)")
    emit("const CRFS_SIGINFO_SIZE", "CRFS_SIGINFO_SIZE")
    for name in ("CRFS_IOC_VERSION", "CRFS_IOC_CHECK", "CRFS_IOC_RESTART",
                 "CRFS_IOC_CHECKPOINT", "CRFS_ABI_VERSION", "CRFS_ERRMSG_LEN", "CRFS_IOC_MAGIC",
                 "CRFS_CHECKPOINT_TREE", "CRFS_RESTART_INHERIT", "CRFS_RESTART_REPLACE"):
        emit(f"ioctl {name}", name)
    emit("ioctl sizeof", "sizeof(struct crfs_image_args)")
    for field in ("fd", "flags", "err_offset", "err_type", "task_index", "err_msg"):
        emit(f"ioctl .{field}", f"offsetof(struct crfs_image_args, {field})")
    emit("ioctl CRFS_IOC_RESTART_FILES", "CRFS_IOC_RESTART_FILES")
    emit("ioctl CRFS_MAX_HANDED", "CRFS_MAX_HANDED")
    emit("restart_files sizeof", "sizeof(struct crfs_restart_args)")
    for field in ("image", "handed", "nr_handed", "__reserved"):
        emit(f"restart_files .{field}", f"offsetof(struct crfs_restart_args, {field})")
    emit("handed sizeof", "sizeof(struct crfs_handed_file)")
    for field in ("objref", "fd"):
        emit(f"handed .{field}", f"offsetof(struct crfs_handed_file, {field})")
    emit("checkpoint sizeof", "sizeof(struct crfs_checkpoint_args)")
    for field in ("pid", "fd", "flags", "__reserved", "written", "err_msg"):
        emit(f"checkpoint .{field}", f"offsetof(struct crfs_checkpoint_args, {field})")
    for name in ("CRFS_IOC_LAZY", "CRFS_RESTART_LAZY", "CRFS_LAZY_RANGES", "CRFS_LAZY_GO",
                 "CRFS_LAZY_DONE"):
        emit(f"lazy {name}", name)
    emit("lazy sizeof", "sizeof(struct crfs_lazy_args)")
    for field in ("pid", "op", "ranges", "nr_ranges", "uffd", "__reserved"):
        emit(f"lazy .{field}", f"offsetof(struct crfs_lazy_args, {field})")
    emit("lazy_range sizeof", "sizeof(struct crfs_lazy_range)")
    for field in ("addr", "len", "pos"):
        emit(f"lazy_range .{field}", f"offsetof(struct crfs_lazy_range, {field})")
    lines += ['printf("\\"end\\": 0}\\n");', "return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_values(tmp_path_factory):
    work = tmp_path_factory.mktemp("kmod-layout")
    source = work / "layout.c"
    source.write_text(_program())
    exe = work / "layout"
    build = subprocess.run(["gcc", "-m64", "-Wall", "-Werror", "-I", str(KMOD), "-o", str(exe),
                            str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return json.loads(subprocess.run([str(exe)], check=True, capture_output=True,
                                     text=True).stdout)


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_layout_matches_construct(c_values, name):
    struct = STRUCTS[name]
    assert c_values[f"sizeof {name}"] == struct.sizeof()
    for field, offset in _fields(struct):
        assert c_values[f"{name}.{field}"] == offset, field


def test_sigpending_head_matches_construct(c_values):
    """ckpt_hdr_sigpending without its siginfo[]: SIGPENDING_SIZE bytes, same offsets."""
    assert c_values["sizeof ckpt_hdr_sigpending"] == fmt.SIGPENDING_SIZE
    head = list(_fields(Struct(*fmt.ckpt_hdr_sigpending.subcons[:-1])))
    for field, offset in head:
        if field != "h":
            assert c_values[f"ckpt_hdr_sigpending.{field}"] == offset, field


def test_siginfo_raw_head_matches_construct(c_values):
    """crfs_hdr_siginfo_raw without its siginfo: SIGINFO_RAW_SIZE bytes, same offsets."""
    assert c_values["sizeof crfs_hdr_siginfo_raw"] == fmt.SIGINFO_RAW_SIZE
    assert c_values["crfs_hdr_siginfo_raw.nr_pending"] == 8
    assert c_values["const CRFS_SIGINFO_SIZE"] == fmt.KERNEL_SIGINFO_SIZE


def test_every_fixed_record_is_declared():
    declared = {id(s) for s in STRUCTS.values()}
    for name, struct in {**fmt.FIXED, **fmt.AT_LEAST}.items():
        assert id(struct) in declared or name in NOT_IN_MODULE, name


def test_constants_match(c_values):
    for py_name in CONSTANTS:
        assert c_values[f"const {py_name}"] == PY_CONSTANTS[py_name], py_name
    assert c_values["const CKPT_PGARR_BATCH"] == fmt.CKPT_PGARR_BATCH["x86_64"]


def test_ioctl_abi_matches_crfs_kernel(c_values):
    assert c_values["ioctl CRFS_IOC_MAGIC"] == kernel.CRFS_IOC_MAGIC
    assert c_values["ioctl CRFS_IOC_VERSION"] == kernel.CRFS_IOC_VERSION
    assert c_values["ioctl CRFS_IOC_CHECK"] == kernel.CRFS_IOC_CHECK
    assert c_values["ioctl CRFS_IOC_RESTART"] == kernel.CRFS_IOC_RESTART
    assert c_values["ioctl CRFS_ABI_VERSION"] == kernel.CRFS_ABI_VERSION
    assert c_values["ioctl CRFS_ERRMSG_LEN"] == kernel.CRFS_ERRMSG_LEN
    assert c_values["ioctl CRFS_RESTART_INHERIT"] == kernel.RESTART_INHERIT
    assert c_values["ioctl CRFS_RESTART_REPLACE"] == kernel.RESTART_REPLACE
    assert c_values["ioctl sizeof"] == ctypes.sizeof(kernel.ImageArgs)
    py_fields = {name: getattr(kernel.ImageArgs, name).offset
                 for name, _ in kernel.ImageArgs._fields_}
    for field, offset in py_fields.items():
        assert c_values[f"ioctl .{field}"] == offset, field


def test_checkpoint_ioctl_abi_matches_crfs_kernel(c_values):
    assert c_values["ioctl CRFS_IOC_CHECKPOINT"] == kernel.CRFS_IOC_CHECKPOINT
    assert c_values["ioctl CRFS_CHECKPOINT_TREE"] == kernel.CHECKPOINT_TREE
    assert c_values["checkpoint sizeof"] == ctypes.sizeof(kernel.CheckpointArgs)
    py_fields = {name: getattr(kernel.CheckpointArgs, name).offset
                 for name, _ in kernel.CheckpointArgs._fields_}
    py_fields["__reserved"] = py_fields.pop("_reserved")
    for field, offset in py_fields.items():
        assert c_values[f"checkpoint .{field}"] == offset, field



def test_restart_files_ioctl_abi_matches_crfs_kernel(c_values):
    """RESTART_FILES (kmod/crfs_anonfd.c): its number, struct crfs_restart_args and the
    (objref, fd) entries of its table."""
    assert c_values["ioctl CRFS_IOC_RESTART_FILES"] == kernel.CRFS_IOC_RESTART_FILES
    assert c_values["ioctl CRFS_MAX_HANDED"] == kernel.CRFS_MAX_HANDED
    assert c_values["restart_files sizeof"] == ctypes.sizeof(kernel.RestartArgs) == 136
    for name, _ in kernel.RestartArgs._fields_:
        c_name = "__reserved" if name == "_reserved" else name
        assert c_values[f"restart_files .{c_name}"] == getattr(kernel.RestartArgs, name).offset
    assert c_values["handed sizeof"] == ctypes.sizeof(kernel.HandedFile) == 8
    for name, _ in kernel.HandedFile._fields_:
        assert c_values[f"handed .{name}"] == getattr(kernel.HandedFile, name).offset


def test_lazy_ioctl_abi_matches_crfs_kernel(c_values):
    """CRFS_IOC_LAZY and CRFS_RESTART_LAZY (kmod/crfs_lazy.c): numbers, struct
    crfs_lazy_args and struct crfs_lazy_range."""
    assert c_values["lazy CRFS_IOC_LAZY"] == kernel.CRFS_IOC_LAZY
    assert c_values["lazy CRFS_RESTART_LAZY"] == kernel.RESTART_LAZY
    assert [c_values[f"lazy CRFS_LAZY_{op}"] for op in ("RANGES", "GO", "DONE")] == \
        [kernel.LAZY_RANGES, kernel.LAZY_GO, kernel.LAZY_DONE]
    assert c_values["lazy sizeof"] == ctypes.sizeof(kernel.LazyArgs) == 32
    for name, _ in kernel.LazyArgs._fields_:
        c_name = "__reserved" if name == "_reserved" else name
        assert c_values[f"lazy .{c_name}"] == getattr(kernel.LazyArgs, name).offset
    assert c_values["lazy_range sizeof"] == ctypes.sizeof(kernel.LazyRange) == 24
    for name, _ in kernel.LazyRange._fields_:
        assert c_values[f"lazy_range .{name}"] == getattr(kernel.LazyRange, name).offset
