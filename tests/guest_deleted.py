"""Guest side of the step "deleted" (tests/test_kmod_guest.py; kmod/crfs_deleted.c,
kmod/crfs_nsfile.c): what a restart recreates because no name leads to it any more.

deleted_target (tests/c/deleted_target.c) holds a regular file unlinked while open (with
mode, owner, position and a dup), a memfd, an O_PATH fd on a deleted symlink and one on a
live symlink, a namespace file, and a removed cwd. It is checkpointed by `crfs checkpoint`
(ptrace) and by the module (--via kernel), each image restarted by crfs-restart, and the
program's own checks reported. The ptrace image is then corrupted record by record (sizes
that lie, a bad mode, a directory that is gone, a foreign namespace ...): each restart must
be refused with its errno and reason, the caller intact. Runs inside the guest; decides
nothing.
"""

import os
import shutil
import struct
import subprocess
import sys

import guest_files as gf
from guest_util import stage
from crfs.formats import ckpt as fmt

WORK = "/tmp/crfs-del"
WORK_USER = "/tmp/crfs-del-u"     # a user's run: its file in locked/, made unwritable
USER = 1000
HDR = fmt.CKPT_HDR
DELETED = fmt.CKPT_FILE["CRFS_FILE_DELETED"]


def as_user():
    os.setgroups([])
    os.setgid(USER)
    os.setuid(USER)


def start(exe, work, tag, *args, user=False):
    out_path = os.path.join(work, f"{tag}.out")
    with open(out_path, "w") as out:
        if user:
            os.chown(out_path, USER, USER)     # its restart reopens it as the user
        proc = subprocess.Popen([exe, work, *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=as_user if user else None)
    gf.wait_lines(out_path, 1)
    return proc, out_path


def checkpoint(pid, image, via):
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), "-o", image,
                         "--kill", "--via", via], capture_output=True, text=True, timeout=120)
    return {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}


def one_way(exe, work, restarter, via):
    """Checkpoint by `via`, restart, the program's check lines."""
    proc, out_path = start(exe, work, via)
    result = {"before": gf.fds_of(proc.pid)}
    image = os.path.join(work, f"{via}.img")
    result["checkpoint"] = checkpoint(proc.pid, image, via)
    proc.wait(timeout=60)
    if result["checkpoint"]["rc"]:
        return result, None
    child = gf.restart(image, restarter, os.path.join(work, f"{via}.restart"))
    result["restart"] = gf.outcome(child)
    if child.errno == 0:
        result["after"] = gf.fds_of(child.pid)
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = gf.end_of(child)
        os.unlink(os.path.join(work, "stop"))
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    return result, image


def deleted_file(data, recs, f_type=DELETED, n=0):
    """Offset of the n-th FILE record of f_type."""
    found = [off for off, type_, _ in recs if type_ == HDR["CKPT_HDR_FILE"]
             and struct.unpack_from("<I", data, off + 8)[0] == f_type]
    return found[n]


def after(recs, offset, type_):
    """The first record of type_ after offset: (offset, len)."""
    return next((off, length) for off, t, length in recs if off > offset and t == type_)


def set_size(value):
    def fn(data, recs):
        struct.pack_into("<Q", data, deleted_file(data, recs) + 48, value)
    return fn


def set_mode(value):
    def fn(data, recs):
        struct.pack_into("<I", data, deleted_file(data, recs) + 56, value)
    return fn


def dir_size(data, recs):
    """The deleted directory (the last deleted FILE) said to have 8 bytes."""
    struct.pack_into("<Q", data, deleted_file(data, recs, n=-1) + 48, 8)


def rename_dir(data, recs):
    """The deleted file's link names a directory that does not exist (same length)."""
    off, length = after(recs, deleted_file(data, recs), HDR["CKPT_HDR_STRING"])
    text = bytes(data[off + 8:off + length])
    data[off + 8:off + length] = text.replace(b"/crfs-del/", b"/crfs-dex/")


def symlink_nul(data, recs):
    """A NUL inside the deleted symlink's target (the second deleted FILE)."""
    off, _ = after(recs, deleted_file(data, recs, n=2), HDR["CKPT_HDR_BUFFER"])
    data[off + 8 + 3] = 0


def unmapped_owner(data, recs):
    off, _ = after(recs, deleted_file(data, recs), HDR["CRFS_HDR_DELETED_STAT"])
    struct.pack_into("<I", data, off + 8, 0xFFFFFFFF)


def foreign_ns(data, recs):
    """The namespace file's name: another inode number (same length)."""
    for off, type_, length in recs:
        text = bytes(data[off + 8:off + length])
        if type_ == HDR["CKPT_HDR_FILE_NAME"] and text.startswith(b"uts:["):
            data[off + 8 + 5] = ord("1") if text[5:6] != b"1" else ord("2")
            return


def no_suffix_cwd(data, recs):
    """The cwd's name with ' (deleted)' made ' (xeleted)': a directory that is gone."""
    for off, type_, length in recs:
        text = bytes(data[off + 8:off + length])
        if type_ == HDR["CKPT_HDR_FILE_NAME"] and text.endswith(b"/cwd (deleted)\0"):
            data[off + 8:off + length] = text.replace(b"(deleted)", b"(xeleted)")
            return


CORRUPT = {
    "size_lies": set_size(24),               # the BUFFER holds 23
    "size_huge": set_size(1 << 40),
    "mode_fifo": set_mode(0o10644),
    "mode_bits": set_mode(0o1100644),
    "dir_gone": rename_dir,
    "dir_with_bytes": dir_size,
    "symlink_nul": symlink_nul,
    "owner_unmapped": unmapped_owner,
    "foreign_ns": foreign_ns,
    "cwd_gone": no_suffix_cwd,
}


def refusals(image, work, restarter):
    out = {}
    for label, fn in CORRUPT.items():
        bad = gf.patch(image, f"{image}.{label}", fn)
        out[label] = gf.outcome(gf.restart(bad, restarter, f"{bad}.out"))
    return out


def user_refusals(exe, restarter):
    """The target run by uid 1000, its file in a directory then taken from it (root's,
    0755), then its cwd's parent too: root restarting the image restores as uid 1000, who
    may create neither."""
    work, locked = WORK_USER, os.path.join(WORK_USER, "locked")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(locked)
    for d in (work, locked):
        os.chmod(d, 0o777)
    proc, _ = start(exe, work, "user", locked, user=True)
    image = os.path.join(WORK, "user.img")
    out = {"checkpoint": checkpoint(proc.pid, image, "ptrace")}
    proc.wait(timeout=60)
    os.chmod(locked, 0o755)
    out["file_dir_locked"] = gf.outcome(gf.restart(image, restarter,
                                                   os.path.join(WORK, "user1.out")))
    os.chmod(work, 0o755)
    out["cwd_dir_locked"] = gf.outcome(gf.restart(image, restarter,
                                                  os.path.join(WORK, "user2.out")))
    out["leftovers"] = sorted(n for d in (work, locked) for n in os.listdir(d)
                              if n.startswith(".crfs") or n == "cwd")
    return out


def step(manifest):
    exe = stage(WORK, {"deleted_target": manifest["deleted_target"]})["deleted_target"]
    restarter = manifest["restarter"]
    result = {}
    for via in ("ptrace", "kernel"):
        result[via], image = one_way(exe, WORK, restarter, via)
        if via == "ptrace" and image:
            result["refused"] = refusals(image, WORK, restarter)
    result["leftovers"] = sorted(n for n in os.listdir(WORK) if n.startswith(".crfs"))
    result["user"] = user_refusals(exe, restarter)
    return result
