"""Guest step `kernel_creds` of tests/kmod_guest_checks.py: the module's CHECKPOINT writes
the credentials (CRED, GROUPINFO, USER, TASK_CREDS; kmod/crfs_ckpt_creds.c).

restore_target runs as nobody with a supplementary group; it is checkpointed while
stopped by the module and by crfs's writer (which reads /proc), then killed. Both images
must hold the same credentials. The module's image restarted by root runs as nobody, in
that group, with no capabilities (before, a module checkpoint carried no credentials and
ran with the restarter's, root's); restarted by nobody in the group it runs as well; by
another user it is refused. Decides nothing: tests/test_kmod_guest.py does.
"""

import os
import subprocess

import kmod_guest_checks as g
from guest_util import stage

DIR = "/tmp/crfs-kcreds"
CRED_FIELDS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups",
               "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "securebits")


def creds_of(path):
    """[(real, effective)] credentials of each task of the image at `path`."""
    from crfs.model import registry
    image = registry.open_image(path)
    try:
        out = []
        for task in image.tasks:
            ecreds = getattr(task.native, "ecreds", None) or task.creds
            out.append([{k: getattr(c, k) for k in CRED_FIELDS} if c else None
                        for c in (task.creds, ecreds)])
        return out
    finally:
        image.close()


def setup(manifest):
    return stage(DIR, {"restore_target": manifest["targets"]["dynamic"],
                       "crfs-restart": manifest["restarter"],
                       "restore.data": manifest["datafile"]})


def kernel_creds(manifest):
    from crfs.checkpoint import checkpoint
    paths = setup(manifest)
    kimg, pimg = os.path.join(DIR, "kernel.img"), os.path.join(DIR, "ptrace.img")
    out_path = os.path.join(DIR, "run.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(g.setpriv(g.NOBODY, [g.NOBODY_GROUP]) +
                                ["setarch", "-R", paths["restore_target"],
                                 paths["restore.data"], "100000"],
                                stdout=out, stderr=subprocess.STDOUT)
    g.wait_for_output(out_path, g.full_lines(5))
    result = {"original": g.status_fields(proc.pid)}
    ck = g.crfs_checkpoint(proc.pid, "-o", kimg, "--via", "kernel", "--leave-stopped")
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-500:]}
    if ck.returncode == 0 and g.wait_state(proc.pid, "T"):
        checkpoint(proc.pid, pimg, after="kill", via="ptrace")
    proc.kill()
    proc.wait(timeout=60)
    if not (os.path.exists(kimg) and os.path.exists(pimg)):
        return result
    os.chmod(kimg, 0o644)
    result["kernel_creds"] = creds_of(kimg)
    result["python_creds"] = creds_of(pimg)
    for label, uid, groups in (("by_root", None, ()),
                               ("by_nobody", g.NOBODY, [g.NOBODY_GROUP]),
                               ("by_other", g.OTHER_USER, [g.NOBODY_GROUP])):
        result[label] = g.restart_as(uid, kimg, paths["crfs-restart"],
                                     os.path.join(DIR, f"{label}.out"), groups)
    return result
