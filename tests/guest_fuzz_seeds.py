"""More seeds for fuzz/kmod_fuzz.py's campaign: the test targets of the other guest steps
(tests/c/*_target.c) checkpointed in the guest by `crfs checkpoint --via ptrace` and
`--via kernel` (`--tree` where they fork), so that the mutations reach the records those
carry: POSIX timers, seccomp, oom_score_adj, rseq, raw siginfo, deleted files, UNIX
sockets, eventfd/timerfd/signalfd/epoll, pipes with buffers, file owners, file ids, the
exe, seccomp (a strict-mode child), sigaltstack and signal state, zombies and stopped tasks, process trees.

Each target runs in a directory of its own under ROOT, which stays in place during the
campaign: a mutated image restarted for real finds the files its seed names. Built on the
host (TARGETS' gcc flags) by fuzz/kmod_fuzz.py; the guest_fuzz step does not use these.
"""

import os
import shutil
import subprocess
import sys

import kmod_guest_checks as g
from guest_files import wait_lines

ROOT = "/tmp/crfs-fuzz-seeds"
# name: (gcc flags, argv after the exe ("{dir}": its directory), ready (a line prefix or
# a count of lines), --tree)
TARGETS = {
    "timers_target": (("-pthread",), (), "ready", False),
    "anonfd_target": ((), ("{dir}", "100000"), 5, False),
    "unix_target": ((), ("{dir}", "100000"), 5, False),
    "pipes_target": ((), ("{dir}", "100000"), 5, False),
    "state_target": ((), (), "ready", True),
    "exe_memfd_target": ((), ("{dir}",), 1, True),
    "deleted_target": ((), ("{dir}",), 1, False),
    "fown_target": ((), (), "ready", True),
    "tree_target": ((), ("100000",), 4, True),
    "sockstrict_target": ((), ("{dir}", "100000"), 3, True),
    "sig_target": (("-pthread",), ("{dir}", "thread"), "ready", False),
}


def build(src_dir, out_dir):
    """Each target compiled into `out_dir` (as tests/conftest.py's build_c does)."""
    for name, (flags, *_) in TARGETS.items():
        subprocess.run(["gcc", "-m64", "-O0", "-g", "-Wall", "-Werror", *flags, "-o",
                        os.path.join(out_dir, name), os.path.join(src_dir, f"{name}.c")],
                       check=True, capture_output=True, text=True)


def one(exe_src, name, via):
    """`name` started in ROOT/name-via and checkpointed `via`: (image or None, report)."""
    _, args, ready, tree = TARGETS[name]
    work = os.path.join(ROOT, f"{name}-{via}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.chmod(work, 0o777)
    exe = os.path.join(work, name)
    shutil.copy(exe_src, exe)
    os.chmod(exe, 0o755)
    out = os.path.join(work, "out")
    with open(out, "w") as f:
        proc = subprocess.Popen(["setarch", "-R", exe, *[a.format(dir=work) for a in args]],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                cwd=work)
    if isinstance(ready, str):
        g.wait_for_output(out, g.lines_starting(ready, 1))
    else:
        wait_lines(out, ready)
    image = os.path.join(work, "seed.img")
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "-o",
                         image, "--kill", "--via", via, *(["--tree"] if tree else [])],
                        capture_output=True, text=True, timeout=180)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    report = {"rc": ck.returncode, "stderr": ck.stderr[-300:]}
    return (image if ck.returncode == 0 and os.path.exists(image) else None), report


def make(exe_dir):
    """Every target of `exe_dir` checkpointed both ways: ([images], {label: report})."""
    images, reports = [], {}
    for name in TARGETS:
        exe = os.path.join(exe_dir, name)
        if not os.path.exists(exe):
            continue
        for via in ("ptrace", "kernel"):
            try:
                image, reports[f"{name}-{via}"] = one(exe, name, via)
            except (OSError, subprocess.SubprocessError) as exc:
                image, reports[f"{name}-{via}"] = None, {"error": repr(exc)}
            if image:
                images.append(image)
    return images, reports
