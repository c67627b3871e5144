"""Guest step `file_id` of tests/kmod_guest_checks.py: mapped files checked at restart.

restore_target maps a data file. It is checkpointed twice while stopped, by the module
(`crfs checkpoint --via kernel`) and by crfs's writer (ptrace), then killed. Both images
must record the same identity for the data file, the one stat(2) gives. Then: the
unchanged file restarts (and is killed after 10 s); a touched file (mtime), a grown file (size) and a file replaced
by a copy with the same bytes and mtime (inode) are each refused with ESTALE naming the
file; put back as it was (same inode, size and mtime), the module's image restarts.
Decides nothing: tests/test_kmod_guest.py holds the expectations.
"""

import os
import shutil

import kmod_guest_checks as g
from crfs import kernel

DIR = "/tmp/crfs-fid"      # a fresh directory: the data file is the guest's own inode
# Ticks (~10 ms each) before the target exits: a loaded TCG guest may take a minute to
# start `crfs checkpoint`. A restored target is killed 10 s after its restart.
LIMIT = 100000


def file_ids(path, data):
    """{"dev", "ino", "size", "mtime_ns"} the image at `path` records for file `data`."""
    from crfs.model import registry
    image = registry.open_image(path)
    try:
        ids = {v.file_id for mm in image.mms() for v in mm.vmas if v.file == data}
    finally:
        image.close()
    return [vars(i) if i else None for i in ids]


def refused(image, restarter):
    child = kernel.restart_in_child(image, restarter=restarter, timeout=120)
    return g.reported(child)


def start(manifest):
    """The target mapping DIR/fid.data, ticking; (process, exe, data, out path)."""
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    os.chmod(DIR, 0o755)
    exe = os.path.join(DIR, "restore_target")
    shutil.copy(manifest["targets"]["dynamic"], exe)
    data = os.path.join(DIR, "fid.data")
    with open(data, "wb") as f:
        f.write(b"A" * 4096 + b"B" * 4096)
    out = os.path.join(DIR, "fid.out")
    return g.start_ticking(exe, data, out, LIMIT), data


def checkpoints(proc, kimg, pimg):
    """The module's image, then the userspace writer's, of the stopped process."""
    from crfs.checkpoint import checkpoint
    ck = g.crfs_checkpoint(proc.pid, "-o", kimg, "--via", "kernel", "--leave-stopped")
    result = {"kernel_rc": ck.returncode, "kernel_stderr": ck.stderr[-500:]}
    if ck.returncode == 0 and g.wait_state(proc.pid, "T"):
        checkpoint(proc.pid, pimg, after="kill", via="ptrace")
    proc.kill()
    proc.wait(timeout=60)
    return result


def changes(data, kimg, pimg, restarter):
    """Each change refused (both images for the first), then the file put back."""
    st = os.stat(data)
    times = (st.st_atime_ns, st.st_mtime_ns)
    out = {}
    os.utime(data, ns=(times[0], times[1] + 1_000_000_000))
    out["mtime"] = refused(pimg, restarter)
    out["mtime_kernel_image"] = refused(kimg, restarter)
    with open(data, "ab") as f:
        f.write(b"C")
    os.utime(data, ns=times)
    out["size"] = refused(pimg, restarter)
    with open(data, "r+b") as f:
        f.truncate(st.st_size)
    os.utime(data, ns=times)
    copy = data + ".new"
    shutil.copyfile(data, copy)
    os.utime(copy, ns=times)
    os.rename(data, data + ".old")
    os.rename(copy, data)
    out["inode"] = refused(pimg, restarter)
    os.rename(data + ".old", data)     # the original inode, size and mtime again
    os.utime(data, ns=times)
    return out


def file_id_checks(manifest):
    kimg, pimg = os.path.join(DIR, "kernel.img"), os.path.join(DIR, "ptrace.img")
    proc, data = start(manifest)
    out = checkpoints(proc, kimg, pimg)
    if not (os.path.exists(kimg) and os.path.exists(pimg)):
        return out
    st = os.stat(data)
    out["stat"] = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                   "mtime_ns": st.st_mtime_ns}
    out["kernel_ids"] = file_ids(kimg, data)
    out["python_ids"] = file_ids(pimg, data)
    out["same_as_python"] = g.same_as_python(kimg, pimg)
    restarter = manifest["restarter"]
    # pimg is of the process --leave-stopped left stopped: restored stopped, then resumed
    out["unchanged"] = g.restart_direct(pimg, os.path.join(DIR, "fid.out2"), restarter,
                                        wait=False, resume=True)
    out.update(changes(data, kimg, pimg, restarter))
    out["put_back"] = g.restart_direct(kimg, os.path.join(DIR, "fid.out3"), restarter,
                                       wait=False)
    return out
