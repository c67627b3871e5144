#!/usr/bin/env python3
"""Benchmark: restart in the kernel (crfs.ko + kmod/crfs-restart) vs `criu restore`.

Issue #5: in the qemu guest (kmod/harness, Debian's 6.1 kernel under TCG), restart of a
process with 256 MiB of dirty heap (bench/dirty_heap.c) vs `criu restore` of the same
process; target: crfs faster than criu.

The host builds crfs.ko and crfs-restart (`make` in a temporary copy of kmod/, so the tree
stays clean) and bench/dirty_heap.c, then boots ONE guest (kmod/harness/run-in-guest) that
runs this script with --in-guest. The guest loads crfs.ko, brings up `lo` and loads the
netfilter/diag modules criu's kernel-feature probe needs (the harness initramfs loads only
virtio/9p/overlay, and the guest kernel cannot autoload from the chroot), runs `criu check`
once (which also fills criu's /run/criu.kdat cache, as on any machine that ran criu
before), then --runs times, alternating which tool goes first:

  criu  dirty_heap started with `setsid setarch -R`, stdio on files (no tty, so no
        --shell-job); after its first tick `criu dump -t PID -D DIR` (kills it), then
        timed: `criu restore -D DIR -d` until it exits (-d returns once the tree runs);
  crfs  the same start; `python3 -m crfs checkpoint PID -o IMG --kill`, then timed:
        `crfs-restart -r FD IMG` (through crfs.kernel.restart_in_child) until its answer on
        the report pipe: EOF (the kernel closes every fd above 2 of the restored program)
        or, with the image's pid restored, the restarter's "restored" report (docs/kmod.md).

  lazy  the same as crfs with `crfs-restart --lazy` (issue #14): the program runs at its
        first report ("restored", sent once its ranges are registered), its pages come
        through userfaultfd; timed also until the second report, "resident" (every page
        of the image in). The table of lazy vs eager gives both ratios, and lazy vs criu
        restore against the targets (next instruction <= 0.25x, resident <= 1.0x).

  lazy1  (--one-stream) the same as lazy with CRFS_LAZY_STREAMS=1: the server streams with
        its serving thread alone (before, a second thread streams the span after its own);
        reported beside lazy, run by run.

  installed  (--installed) only the checkpoint, by crfs installed as a user installs it:
        a clean venv made on the host (guest_bench.make_venv: the package with its
        bytecode and the `crfs` console script, none of this machine's .pth files, no
        PYTHONPATH). The `crfs` tool's checkpoint is `python3 -m crfs` from this tree with
        PYTHONPATH and this machine's site-packages, whose .pth files (a sandbox's certifi
        hook, crfs's editable-install finder) run at every start: both are reported.

  front  only the checkpoint, by root's compiled `crfs` (kmod/crfs-front, built with the
        module; docs/checkpoint.md "The compiled front"): the same command, which has
        crfs.ko write the image without starting Python. Its PATH holds no Python `crfs`,
        so a checkpoint it handed on to the CLI instead would fail, not be timed.

  snapshot  only the checkpoint, by the front's default: a snapshot (CRFS_IOC_SNAPSHOT;
        docs/checkpoint.md "Through the module"), the program running on (no --kill; it is
        killed afterwards). Timed from spawn, and how long the program was stopped, from
        the front's summary line (its stderr on a pseudo-terminal); criu dump stops the
        program for its whole run.

  compare  (--compare DIR) only the checkpoint, by the crfs of another checkout (DIR/crfs
        copied into the shared work directory, e.g. `git archive main`), the same command
        with that crfs first on PYTHONPATH: a change to the checkpoint's start-up against
        its parent, on the same program in the same guest.

Both restores are commands timed from spawn (start-up included), reading their images from
the guest's tmpfs. After each restore the program must print a tick after its last one
with its heap check `ok` (every page's index word re-read), then it is killed. Reported:
per-run and median times, the ratio crfs restart / criu restore, the checkpoint sides
(criu dump vs crfs checkpoint, the latter a Python CLI) as extra information, and the time
from spawn to the restored program's first new line.

Nothing is installed: without criu (apt-get install criu) or the harness
(bash kmod/harness/setup) the script says so and exits 2.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from crfs import kernel  # noqa: E402 - the repository's, not an installed one
from guest_bench import (ROOT, build_kmod, compile_crfs, guest_setup,  # noqa: E402
                         host_ready, installed_env, make_venv, run_guest, warm_memory)

# ----------------------------------------------------------------------------- guest side


def wait_line(path, pred, timeout):
    """Seconds until a line of `path` satisfies pred (None on timeout), and that line."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with open(path) as f:
                for line in f:
                    if line.endswith("\n") and pred(line):
                        return time.monotonic() - t0, line.strip()
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return None, None


def tick_of(line):
    parts = line.split()
    return int(parts[1]) if len(parts) >= 4 and parts[0] == "tick" else -1


def last_tick(path):
    with open(path) as f:
        return max((tick_of(line) for line in f), default=-1)


def start_program(exe, mib, out_path):
    """dirty_heap under setsid + setarch -R, stdio on files; returns once it has ticked."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, str(mib), "100"],
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    waited, line = wait_line(out_path, lambda s: s.startswith("tick 1 "), 300)
    if waited is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"dirty_heap did not get ready: {open(out_path).read()[-500:]!r}")
    return proc


def reap(pid):
    """Kill a restored program (our child, or re-parented to us: we are a subreaper)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.02)


def timed_run(cmd):
    t0 = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return time.monotonic() - t0, run


def log_tail(path, n=25):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-n:])
    except OSError as exc:
        return f"({exc})"


def criu_round(exe, mib, work):
    out = os.path.join(work, "criu.out")
    images = os.path.join(work, "criu-images")
    os.makedirs(images)
    result = {}
    proc = start_program(exe, mib, out)
    try:
        secs, run = timed_run(["criu", "dump", "-t", str(proc.pid), "-D", images,
                               "-o", "dump.log"])
        result["dump_s"] = secs
        if run.returncode:
            result["error"] = (f"criu dump exited {run.returncode}: {run.stderr.strip()}\n"
                               + log_tail(os.path.join(images, "dump.log")))
            return result
        result["dump_exit"] = proc.wait(timeout=60)
        result["image_bytes"] = sum(os.path.getsize(os.path.join(images, n))
                                    for n in os.listdir(images) if n.endswith(".img"))
        before = last_tick(out)
        t0 = time.monotonic()
        secs, run = timed_run(["criu", "restore", "-D", images, "-d", "-o", "restore.log"])
        result["restore_s"] = secs
        if run.returncode:
            result["error"] = (f"criu restore exited {run.returncode}: {run.stderr.strip()}\n"
                               + log_tail(os.path.join(images, "restore.log")))
            return result
        waited, line = wait_line(out, lambda s: tick_of(s) > before, 60)
        result["first_line_s"] = None if waited is None else time.monotonic() - t0
        result["line_after"] = line
        result["ok"] = bool(line) and line.endswith("heap=ok") and f"pid={proc.pid}" in line
    finally:
        reap(proc.pid)
        shutil.rmtree(images, ignore_errors=True)
    return result


def restart_reports(restarter, image, stdout, lazy, env=None):
    """crfs-restart [--lazy] -r FD IMAGE: seconds from spawn to its first report (the
    program runs its next instruction), to it being fully resident (--lazy: the second
    report, "resident"; eager: the same moment), the program's pid, the restarter."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    t0 = time.monotonic()
    proc = subprocess.Popen([restarter, "-r", str(write_fd), *(["--lazy"] if lazy else []),
                             image], stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                            start_new_session=True, env=env)
    os.close(write_fd)
    size = kernel._RESULT.size
    times, reports = [], []
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        for _ in range(2 if lazy else 1):
            data = b""
            while len(data) < size:
                chunk = reader.read(size - len(data))
                if not chunk:
                    break
                data += chunk
            times.append(time.monotonic() - t0)
            if len(data) < size:
                break
            reports.append(kernel._RESULT.unpack(data))
    ok = len(reports) == len(times) and all(r[0] == 0 for r in reports)
    pid = int(reports[0][4].rstrip(b"\0").split()[1].rstrip(b":")) if ok else None
    return times[0], times[-1] if ok else None, pid, proc


def compare_round(exe, mib, work, code):
    """The checkpoint alone (`crfs checkpoint PID -o IMG --kill`), by the crfs in `code`."""
    return checkpoint_round(exe, mib, work, [sys.executable, "-m", "crfs"],
                            {**os.environ, "PYTHONPATH": code}, code, "compare")


def installed_round(exe, mib, work, venv):
    """The checkpoint alone, by the crfs installed in `venv` (its `crfs` script, no
    PYTHONPATH: guest_bench.make_venv)."""
    return checkpoint_round(exe, mib, work, [os.path.join(venv, "bin", "crfs")],
                            installed_env(), "/", "installed")


def front_round(exe, mib, work, front):
    """The checkpoint alone, by root's compiled `crfs` (kmod/crfs-front), with no Python
    CLI on PATH: a command it handed on instead of writing it would fail, not pass."""
    return checkpoint_round(exe, mib, work, [front],
                            {**installed_env(), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                            "/", "front")


def snapshot_round(exe, mib, work, front):
    """The front's default checkpoint, a snapshot, of a fresh program that runs on: the
    whole command timed from spawn, and the stop its summary line reports."""
    import pty
    import re
    import select
    out = os.path.join(work, "snapshot.out")
    image = os.path.join(work, "snapshot.img")
    proc = start_program(exe, mib, out)
    master, slave = pty.openpty()
    try:
        t0 = time.monotonic()
        run = subprocess.run([front, "checkpoint", str(proc.pid), "-o", image],
                             stdout=subprocess.PIPE, stderr=slave, text=True, timeout=600,
                             env={**installed_env(), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             cwd="/")
        result = {"dump_s": time.monotonic() - t0}
        os.close(slave)
        slave = None
        tty = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
        stopped = re.search(rb"snapshot, written by crfs\.ko, stopped (\d+) ms", tty)
        if run.returncode or not stopped:
            result["error"] = (f"snapshot checkpoint exited {run.returncode}: "
                               f"{tty.decode(errors='replace').strip()[-300:]}")
        else:
            result.update(ok=True, frozen_s=int(stopped[1]) / 1000,
                          image_bytes=os.path.getsize(image))
        return result
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
        reap(proc.pid)
        if os.path.exists(image):
            os.unlink(image)


def checkpoint_round(exe, mib, work, crfs, env, cwd, tag):
    """`CRFS checkpoint PID -o IMG --kill` of a fresh program, timed from spawn."""
    out = os.path.join(work, f"{tag}.out")
    image = os.path.join(work, f"{tag}.img")
    proc = start_program(exe, mib, out)
    try:
        t0 = time.monotonic()
        run = subprocess.run([*crfs, "checkpoint", str(proc.pid), "-o", image, "--kill"],
                             capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
        result = {"dump_s": time.monotonic() - t0}
        if run.returncode:
            result["error"] = f"{tag} checkpoint exited {run.returncode}: {run.stderr.strip()}"
        else:
            result["ok"] = True
            result["image_bytes"] = os.path.getsize(image)
        return result
    finally:
        reap(proc.pid)
        if os.path.exists(image):
            os.unlink(image)


def crfs_round(exe, mib, work, restarter, lazy=False, env=None):
    out = os.path.join(work, "crfs.out")
    out2 = os.path.join(work, "crfs.out2")
    image = os.path.join(work, "prog.img")
    result = {}
    proc = start_program(exe, mib, out)
    try:
        secs, run = timed_run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid),
                               "-o", image, "--kill"])
        result["dump_s"] = secs
        if run.returncode:
            result["error"] = f"crfs checkpoint exited {run.returncode}: {run.stderr.strip()}"
            return result
        result["dump_exit"] = proc.wait(timeout=60)
        result["image_bytes"] = os.path.getsize(image)
        before = last_tick(out)
        with open(out2, "w") as stdout:
            t0 = time.monotonic()
            first, resident, pid, relay = restart_reports(restarter, image, stdout, lazy,
                                                          env)
        result["restore_s"] = first
        result["resident_s"] = resident
        if pid is None:
            relay.wait()
            result["error"] = f"crfs-restart failed: {open(out2).read().strip()}"
            return result
        result["restored_pid"] = pid
        # the image's stdout is `out` (a file: the restart reopens it), not out2
        waited, line = wait_line(out, lambda s: tick_of(s) > before, 60)
        result["first_line_s"] = None if waited is None else time.monotonic() - t0
        result["line_after"] = line
        result["ok"] = bool(line) and line.endswith("heap=ok")
        reap(pid)
        reap(relay.pid)
    finally:
        reap(proc.pid)
        if os.path.exists(image):
            os.unlink(image)
    return result


def guest_main(args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)     # PR_SET_CHILD_SUBREAPER: criu -d's tree comes back to us
    work = tempfile.mkdtemp(prefix="rvc.", dir="/tmp")     # the guest's tmpfs
    exe = os.path.join(work, "dirty_heap")
    shutil.copy(os.path.join(args.tmp, "dirty_heap"), exe)
    results = {"mib": args.mib, "runs": [], "setup": guest_setup(args.tmp)}
    if args.warm:
        t0 = time.monotonic()
        warm_memory()
        results["setup"]["warm_s"] = time.monotonic() - t0
    restarter = os.path.join(args.tmp, "kmod", "crfs-restart")
    front = os.path.join(args.tmp, "kmod", "crfs-front")
    compile_crfs()           # as an installed crfs: bytecode, not sources
    import crfs.checkpoint   # noqa: F401  - warm the page cache for the CLI's imports
    code = os.path.join(args.tmp, "compare")
    tools = ("criu", "crfs", "lazy", "front", "snapshot")
    if os.path.isdir(code):
        import compileall
        compileall.compile_dir(os.path.join(code, "crfs"), quiet=1)
        tools += ("compare",)
        results["compare"] = True
    if args.venv:
        tools += ("installed",)
        results["installed"] = True
    if args.one_stream:
        tools += ("lazy1",)
        results["one_stream"] = True
    for i in range(args.runs):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        run = {}
        for tool in order:
            try:
                if tool == "compare":
                    run[tool] = compare_round(exe, args.mib, work, code)
                elif tool == "installed":
                    run[tool] = installed_round(exe, args.mib, work, args.venv)
                elif tool == "front":
                    run[tool] = front_round(exe, args.mib, work, front)
                elif tool == "snapshot":
                    run[tool] = snapshot_round(exe, args.mib, work, front)
                elif tool == "criu":
                    run[tool] = criu_round(exe, args.mib, work)
                elif tool == "lazy1":
                    run[tool] = crfs_round(exe, args.mib, work, restarter, True,
                                           {**os.environ, "CRFS_LAZY_STREAMS": "1"})
                else:
                    run[tool] = crfs_round(exe, args.mib, work, restarter, tool == "lazy")
            except Exception as exc:   # noqa: BLE001 - report, never fake a number
                run[tool] = {"error": repr(exc)}
            print(f"run {i + 1} {tool}: {json.dumps(run[tool])}", flush=True)
        results["runs"].append(run)
    subprocess.run(["rmmod", "crfs"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(args.tmp, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


# ----------------------------------------------------------------------------- host side


def fmt(value, unit="s"):
    return "—" if value is None else f"{value:.3f} {unit}"


def collect(cols, pairs):
    """Append each (column, value) of one run to `cols`, the values that are not None."""
    for key, value in pairs:
        if value is not None:
            cols[key].append(value)


def medians(cols):
    """{column: median of its values, or None without any}."""
    return {k: statistics.median(v) if v else None for k, v in cols.items()}


def report(results):
    runs = results["runs"]
    setup = results["setup"]
    print(f"guest: kernel {setup['uname']}, {int(setup['mem_total']) // 1024} MiB, TCG; "
          f"{setup['criu_version']}; crfs.ko insmod: {setup['insmod']}")
    if setup["modprobe"]:
        print(f"modprobe: {setup['modprobe']}")
    print("criu check (informational; its optional probes may fail in the guest):")
    for line in setup["criu_check"].splitlines()[-6:]:
        print(f"    {line}")
    print(f"process: bench/dirty_heap.c, {results['mib']} MiB dirty heap, "
          f"{len(runs)} runs (order alternating)")
    print()
    print("| run | criu dump | criu restore | crfs checkpoint | crfs restart | "
          "restart crfs/criu |")
    print("|---|---|---|---|---|---|")
    cols = {k: [] for k in ("cd", "cr", "fd", "fr", "cl", "fl")}
    errors = []
    for i, run in enumerate(runs, 1):
        c, f = run.get("criu", {}), run.get("crfs", {})
        for tool, r in (("criu", c), ("crfs", f)):
            if "error" in r:
                errors.append(f"run {i} {tool}: {r['error']}")
            elif not r.get("ok"):
                errors.append(f"run {i} {tool}: restored program did not go on as expected: "
                              f"{r.get('line_after')!r}")
        cr = c.get("restore_s") if c.get("ok") else None
        fr = f.get("restore_s") if f.get("ok") else None
        collect(cols, (("cd", c.get("dump_s") if "error" not in c or cr else None),
                       ("cr", cr), ("fd", f.get("dump_s")), ("fr", fr),
                       ("cl", c.get("first_line_s")), ("fl", f.get("first_line_s"))))
        ratio = f"{fr / cr:.3f}" if cr and fr else "—"
        print(f"| {i} | {fmt(c.get('dump_s'))} | {fmt(cr)} | {fmt(f.get('dump_s'))} | "
              f"{fmt(fr)} | {ratio} |")
    med = medians(cols)
    ratio = f"**{med['fr'] / med['cr']:.3f}**" if med["cr"] and med["fr"] else "—"
    print(f"| median | {fmt(med['cd'])} | {fmt(med['cr'])} | {fmt(med['fd'])} | "
          f"{fmt(med['fr'])} | {ratio} |")
    print()
    sizes = [(r.get("criu", {}).get("image_bytes"), r.get("crfs", {}).get("image_bytes"))
             for r in runs]
    if sizes and sizes[0][0] and sizes[0][1]:
        print(f"images: criu {sizes[0][0] / 2**20:.1f} MiB, crfs {sizes[0][1] / 2**20:.1f} MiB")
    print(f"spawn to the restored program's first new line (median): criu {fmt(med['cl'])}, "
          f"crfs {fmt(med['fl'])}")
    if med["cr"] and med["fr"]:
        verdict = "met" if med["fr"] < med["cr"] else "NOT met"
        print(f"ratio: crfs restart / criu restore = {med['fr'] / med['cr']:.3f} "
              f"(ratio of the medians); target faster than criu: "
              f"{verdict}")
        if med["fd"] and med["cd"]:
            print(f"checkpoint side: crfs checkpoint / criu dump = {med['fd'] / med['cd']:.2f}")
    elif med["fr"]:
        print("ratio: no criu baseline (criu failed, see below); crfs restart median "
              f"{fmt(med['fr'])}")
    if results.get("compare"):
        errors += report_compare(runs, med["cd"], med["fd"])
    errors += report_checkpoints(runs)
    errors += report_lazy(runs, med["cr"])
    if results.get("one_stream"):
        errors += report_one_stream(runs, med["cr"])
    for line in errors:
        print(f"PROBLEM {line}")
    ok = all(r.get(t, {}).get("ok") for r in runs
             for t in ("criu", "crfs", "lazy", "front", "snapshot"))
    return 0 if ok else 1


def report_compare(runs, criu_dump, crfs_dump):
    """The checkpoint of the other checkout (--compare) against this one and criu dump."""
    values = [r["compare"]["dump_s"] for r in runs if r.get("compare", {}).get("ok")]
    errors = [f"run {i} compare: {r['compare'].get('error')}"
              for i, r in enumerate(runs, 1) if not r.get("compare", {}).get("ok")]
    print()
    print("checkpoint (compare = --compare's crfs): " + ", ".join(
        f"run {i} {fmt(r.get('compare', {}).get('dump_s'))}" for i, r in enumerate(runs, 1)))
    if values and criu_dump and crfs_dump:
        med = statistics.median(values)
        print(f"checkpoint medians: criu dump {fmt(criu_dump)}, crfs {fmt(crfs_dump)}, "
              f"compare {fmt(med)}; crfs / criu dump = {crfs_dump / criu_dump:.2f}, "
              f"compare / criu dump = {med / criu_dump:.2f}, crfs / compare = "
              f"{crfs_dump / med:.2f}")
    return errors


# the checkpoint's columns beside criu dump: (tool, heading)
CHECKPOINTS = (("crfs", "crfs checkpoint (this tree, PYTHONPATH)"),
               ("installed", "crfs checkpoint (installed in a venv)"),
               ("front", "crfs checkpoint --kill (root's compiled front)"),
               ("snapshot", "crfs checkpoint, a snapshot (the front's default)"))


def report_checkpoints(runs):
    """Each run's checkpoint by every crfs that ran (this tree's CLI, --installed's venv,
    the compiled front) against criu dump in the same run, and the ratios of the medians."""
    tools = [(t, h) for t, h in CHECKPOINTS if any(t in r for r in runs)]
    errors = [f"run {i} {t}: {r[t].get('error')}" for i, r in enumerate(runs, 1)
              for t, _ in tools if t != "crfs" and t in r and not r[t].get("ok")]
    print()
    print("| run | criu dump | " + " | ".join(h for _, h in tools) + " | "
          + " | ".join(f"{t}/criu" for t, _ in tools) + " |")
    print("|---|---|" + "---|" * (2 * len(tools)))
    cols = {t: [] for t in ("criu", *(t for t, _ in tools))}
    for i, r in enumerate(runs, 1):
        c = r.get("criu", {}).get("dump_s")
        values = [r.get(t, {}).get("dump_s") if "error" not in r.get(t, {}) else None
                  for t, _ in tools]
        collect(cols, (("criu", c), *zip((t for t, _ in tools), values)))
        print(f"| {i} | {fmt(c)} | " + " | ".join(fmt(v) for v in values) + " | "
              + " | ".join(f"{v / c:.2f}" if c and v else "—" for v in values) + " |")
    med = medians(cols)
    if med["criu"]:
        ratios = [f"**{med[t] / med['criu']:.2f}**" if med[t] else "—" for t, _ in tools]
        print(f"| median | {fmt(med['criu'])} | "
              + " | ".join(fmt(med[t]) for t, _ in tools) + " | " + " | ".join(ratios) + " |")
        print("checkpoint / criu dump (ratio of the medians; target <= 1.0): " + ", ".join(
            f"{t} {med[t] / med['criu']:.2f}" for t, _ in tools if med[t]))
    stops = [r["snapshot"]["frozen_s"] for r in runs if r.get("snapshot", {}).get("ok")]
    if stops and med["criu"]:
        stop = statistics.median(stops)
        print(f"program stopped (medians): snapshot {stop * 1000:.0f} ms (runs: "
              + ", ".join(f"{v * 1000:.0f}" for v in stops) + f" ms); criu dump stops it "
              f"for its whole run, {fmt(med['criu'])}: snapshot / criu dump = "
              f"{stop / med['criu']:.3f}")
    return errors


def report_lazy(runs, criu_median):
    """crfs-restart --lazy against the eager restart and criu restore of the same runs:
    spawn to the program's next instruction (its "restored" report) and to every page
    resident (the "resident" report; the eager restart is resident when it runs)."""
    print()
    print("| run | eager: runs = resident | lazy: runs | lazy: resident | "
          "runs lazy/eager | resident lazy/eager |")
    print("|---|---|---|---|---|---|")
    cols = {"e": [], "lr": [], "lf": []}
    errors = []
    for i, run in enumerate(runs, 1):
        e, z = run.get("crfs", {}), run.get("lazy", {})
        if "error" in z or not z.get("ok"):
            errors.append(f"run {i} lazy: {z.get('error') or z.get('line_after')!r}")
        ev = e.get("restore_s") if e.get("ok") else None
        lr = z.get("restore_s") if z.get("ok") else None
        lf = z.get("resident_s") if z.get("ok") else None
        collect(cols, (("e", ev), ("lr", lr), ("lf", lf)))
        r1 = f"{lr / ev:.3f}" if ev and lr else "—"
        r2 = f"{lf / ev:.3f}" if ev and lf else "—"
        print(f"| {i} | {fmt(ev)} | {fmt(lr)} | {fmt(lf)} | {r1} | {r2} |")
    med = medians(cols)
    print(f"| median | {fmt(med['e'])} | {fmt(med['lr'])} | {fmt(med['lf'])} | "
          f"{med['lr'] / med['e']:.3f} | {med['lf'] / med['e']:.3f} |"
          if med["e"] and med["lr"] and med["lf"] else "| median | — | — | — | — | — |")
    if criu_median and med["lr"] and med["lf"]:
        print(f"lazy / criu restore: until the next instruction {med['lr'] / criu_median:.3f} "
              f"(target <= 0.25), until resident {med['lf'] / criu_median:.3f} "
              f"(target <= 1.0)")
    return errors


def report_one_stream(runs, criu_median):
    """--lazy resident with the second streaming thread (lazy) and without (lazy1), run by
    run, against criu restore of the same runs."""
    print()
    print("| run | criu restore | lazy, 2 streams: resident | lazy, 1 stream: resident | "
          "2 streams / 1 |")
    print("|---|---|---|---|---|")
    cols = {"two": [], "one": []}
    errors = []
    for i, run in enumerate(runs, 1):
        c, z = run.get("criu", {}), run.get("lazy1", {})
        if "error" in z or not z.get("ok"):
            errors.append(f"run {i} lazy1: {z.get('error') or z.get('line_after')!r}")
        two = run.get("lazy", {}).get("resident_s") if run.get("lazy", {}).get("ok") else None
        one = z.get("resident_s") if z.get("ok") else None
        collect(cols, (("two", two), ("one", one)))
        ratio = f"{two / one:.3f}" if two and one else "—"
        print(f"| {i} | {fmt(c.get('restore_s') if c.get('ok') else None)} | {fmt(two)} | "
              f"{fmt(one)} | {ratio} |")
    med = medians(cols)
    if med["two"] and med["one"]:
        print(f"| median | {fmt(criu_median)} | {fmt(med['two'])} | {fmt(med['one'])} | "
              f"**{med['two'] / med['one']:.3f}** |")
    if criu_median and med["two"] and med["one"]:
        print(f"resident / criu restore: 2 streams {med['two'] / criu_median:.3f}, "
              f"1 stream {med['one'] / criu_median:.3f} (target <= 1.0)")
    return errors


def host_main(args):
    missing = host_ready()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="crfs-bench-criu.", dir="/tmp"))
    try:
        t0 = time.monotonic()
        if not build_kmod(tmp):
            return 2
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(tmp / "dirty_heap"),
                        str(ROOT / "bench" / "dirty_heap.c")], check=True)
        if args.compare:
            shutil.copytree(Path(args.compare) / "crfs", tmp / "compare" / "crfs",
                            ignore=shutil.ignore_patterns("__pycache__"))
        guest_args = ["--mib", str(args.mib), "--runs", str(args.runs)]
        if args.installed:
            guest_args += ["--venv", str(make_venv(f"{tmp}-venv").parents[1])]
        if args.warm:
            guest_args.append("--warm")
        if args.one_stream:
            guest_args.append("--one-stream")
        print(f"host: built crfs.ko, crfs-restart and dirty_heap in {time.monotonic() - t0:.1f} s;"
              f" booting the guest (-m {args.guest_mem})", flush=True)
        rc = run_guest(tmp, __file__, guest_args, args.timeout, memory=args.guest_mem)
        results = tmp / "results.json"
        if not results.exists():
            print("no results from the guest", file=sys.stderr)
            return 1
        return report(json.loads(results.read_text())) or (1 if rc else 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(f"{tmp}-venv", ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="dirty heap in MiB (256)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, median (3)")
    parser.add_argument("--guest-mem", default="2G", help="guest RAM (2G)")
    parser.add_argument("--timeout", type=int, default=600, help="guest timeout, s (600)")
    parser.add_argument("--compare", metavar="DIR",
                        help="also time the checkpoint by the crfs of checkout DIR, each run")
    parser.add_argument("--installed", action="store_true",
                        help="also time, each run, the checkpoint by crfs installed in a "
                             "clean venv (its `crfs` script, no PYTHONPATH, none of this "
                             "machine's .pth files): the figure of a user's install")
    parser.add_argument("--warm", action="store_true",
                        help="write the guest's free memory once before the runs "
                             "(guest_bench.warm_memory)")
    parser.add_argument("--one-stream", action="store_true",
                        help="also restart, each run, with --lazy and CRFS_LAZY_STREAMS=1 "
                             "(the server streams with one thread): lazy1 beside lazy")
    parser.add_argument("--venv", help=argparse.SUPPRESS)
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_guest:
        return guest_main(args)
    return host_main(args)


if __name__ == "__main__":
    sys.exit(main())
