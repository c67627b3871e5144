"""Guest side of the shared anonymous memory test (tests/test_kmod_guest.py, step
"shm_tree").

shm_tree_target (tests/c/shm_tree_target.c): a parent and its forked child share 4 pages
of MAP_SHARED|MAP_ANONYMOUS memory, each counting in it and printing what it sees of the
other's counter. Checkpointed with `crfs checkpoint --tree --kill`, restarted by
crfs-restart: what /proc/PID/maps says of the segment in both processes before and after,
and the lines they print. Runs inside the guest; decides nothing.
"""

import os
import struct
import subprocess
import sys

from guest_files import children, end_of, outcome, patch, restart, wait_lines
from guest_util import stage

WORK = "/tmp/crfs-shm"
VMA, SHM_ANON, SHM_ANON_SKIP = 402, 4, 5
INO_SIZE, VM_PGOFF = 24, 64          # offsets in struct ckpt_hdr_vma


def shm_vma(vma_type, offset, value):
    """A patch: the u64 at `offset` of the first VMA record of `vma_type` set to value."""
    def fn(data, recs):
        for pos, type_, _ in recs:
            if type_ == VMA and struct.unpack_from("<I", data, pos + 8)[0] == vma_type:
                struct.pack_into("<Q", data, pos + offset, value)
                return
        raise ValueError(f"no VMA of type {vma_type}")
    return fn


# name -> patch: images the copy-in must refuse (EINVAL), the restarter intact
REFUSED = {
    "skip_size_differs": shm_vma(SHM_ANON_SKIP, INO_SIZE, 8 * 4096),
    "skip_pgoff_past": shm_vma(SHM_ANON_SKIP, VM_PGOFF, 4),
    "dump_pgoff_past": shm_vma(SHM_ANON, VM_PGOFF, 1 << 20),
}


def renamed(old, new):
    """A patch: every copy of the path `old` in the image renamed `new` (as long)."""
    def fn(data, recs):
        at = data.find(old)
        if at < 0:
            raise ValueError(f"no {old!r} in the image")
        while at >= 0:
            data[at:at + len(new)] = new
            at = data.find(old, at + len(new))
    return fn


def refusals(image, work, restarter):
    out = {}
    for label, fn in REFUSED.items():
        bad = patch(image, os.path.join(work, f"bad-{label}.img"), fn)
        out[label] = outcome(restart(bad, restarter, f"{bad}.out", ("-R",)))
    # stdout and stderr of both processes: one FILE object, made by the first of them to
    # reach it; its file gone, that make fails, and the other one, waiting for it or
    # coming later, fails alike (not -R: the image's stdout is reopened)
    out_path = os.path.join(work, "tree.out").encode()
    bad = patch(image, os.path.join(work, "bad-shared_file_gone.img"),
                renamed(out_path, out_path[:-1] + b"X"))
    out["shared_file_gone"] = outcome(restart(bad, restarter, f"{bad}.out"))
    return out


def shm_maps(pid):
    """[(range, offset, inode, path)] of the shared (s) mappings of `pid`."""
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) >= 5 and fields[1][3] == "s":
                    path = fields[5].strip() if len(fields) > 5 else ""
                    out.append([fields[0], fields[2], fields[4], path])
    except OSError as exc:
        out.append(["error", repr(exc)])
    return out


def both_maps(parent):
    kids = children(parent)
    return {"parent": shm_maps(parent), "child": shm_maps(kids[0]) if kids else []}


def shm_tree_step(manifest, via="ptrace"):
    """The step: start the tree, checkpoint it (`via`), restart it, stop it."""
    work = f"{WORK}-{via}"
    exe = stage(work, {"shm_tree_target": manifest["shm_tree_target"]})["shm_tree_target"]
    out_path = os.path.join(work, "tree.out")
    image = os.path.join(work, "tree.img")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, work], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    wait_lines(out_path, 20)
    result = {"before": both_maps(proc.pid)}
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "--tree",
                         "-o", image, "--kill", "--via", via],
                        capture_output=True, text=True, timeout=120)
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    if ck.returncode:
        return result
    result["refused"] = refusals(image, work, manifest["restarter"])
    # -R: the restored tree's stdout is restart.out (the module's image may not name
    # tree.out as a file to reopen)
    out2 = os.path.join(work, "restart.out")
    child = restart(image, manifest["restarter"], out2, ("-R",))
    result["restart"] = outcome(child)
    if child.errno == 0:
        wait_lines(out2, 40)
        result["after"] = both_maps(child.pid)
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = end_of(child)
    with open(out2, errors="replace") as f:
        result["lines_after"] = f.read().splitlines()
    return result
