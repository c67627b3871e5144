#!/usr/bin/env python3
"""Probe: where a 256 MiB `crfs checkpoint PID -o IMG --kill` spends its time in the qemu
guest (issue #13 item 3), next to `criu dump` of the same program in the same session.

The host builds crfs.ko and bench/dirty_heap.c (as bench/restart_vs_criu.py does), installs
crfs as a user would into a new venv (guest_bench.make_venv: bytecode compiled, the
`crfs` console script, no .pth file of this machine's site-packages, no PYTHONPATH), and
boots one guest that prints:

  start-up  medians of --runs of `python3 -S -c pass`, `python3 -c pass`, the venv's
            `python -c pass`, and the kernel path's CLI up to its first system call on the
            process (`crfs checkpoint --via kernel 999999 -o X`, which fails at the missing
            pid after every import) from this tree (`python3 -m crfs`, PYTHONPATH, the
            machine's site) and from the venv (its `crfs` script); one `-X importtime`
            of the latter, its largest imports;
  phases    per run, with the program (dirty_heap, --mib MiB) stopped once by this script
            (crfs.checkpoint.freezer): the module's CHECKPOINT into a new tmpfs file, into a tmpfs file already as large
            (fallocate), then the kill; the whole `crfs checkpoint PID -o IMG --kill` of
            a fresh program from this tree and from the venv, and `criu dump`, order
            rotating;
  perf      with --perf, one `perf record -a -g` (cpu-clock) of the CHECKPOINT into tmpfs,
            its top kernel symbols.

No assertion: numbers to read. Without criu or the harness it says so and exits 2.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from guest_bench import (ROOT, build_kmod, compile_crfs, guest_setup,  # noqa: E402
                         host_ready, installed_env, make_venv, run_guest,
                         warm_memory)
from restart_vs_criu import reap, start_program  # noqa: E402


def timed(cmd, env=None, cwd=None):
    t0 = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    return time.monotonic() - t0, run


def tree_env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def venv_env():
    return installed_env()


def startup(args, out):
    py = sys.executable
    venv_py = os.path.join(args.venv, "bin", "python")
    venv_crfs = os.path.join(args.venv, "bin", "crfs")
    probes = {
        "python3 -S -c pass": ([py, "-S", "-c", "pass"], None),
        "python3 -c pass": ([py, "-c", "pass"], None),
        "venv python -c pass": ([venv_py, "-c", "pass"], venv_env()),
        "cli kernel path (tree)": ([py, "-m", "crfs", "checkpoint", "--via", "kernel",
                                    "999999", "-o", "/tmp/x.img"], tree_env()),
        "cli kernel path (venv crfs)": ([venv_crfs, "checkpoint", "--via", "kernel",
                                         "999999", "-o", "/tmp/x.img"], venv_env()),
    }
    for mod in ("argparse", "ctypes"):
        probes[f"venv import {mod}"] = ([venv_py, "-c", f"import {mod}"], venv_env())
    res = {name: [] for name in probes}
    for _ in range(args.runs):
        for name, (cmd, env) in probes.items():
            secs, run = timed(cmd, env=env, cwd="/")
            res[name].append(secs)
    out["startup"] = {k: statistics.median(v) for k, v in res.items()}
    out["startup_runs"] = res
    _, run = timed([venv_py, "-X", "importtime", venv_crfs, "checkpoint", "--via",
                    "kernel", "999999", "-o", "/tmp/x.img"], env=venv_env(), cwd="/")
    out["importtime"] = [line for line in run.stderr.splitlines() if "|" in line]
    print(json.dumps(out["startup"]), flush=True)


def phases(exe, mib, work):
    """The module's CHECKPOINT of one stopped program, into several outputs."""
    from crfs import kernel
    from crfs.checkpoint.freezer import Freezer
    proc = start_program(exe, mib, os.path.join(work, "phases.out"))
    res = {}
    try:
        freezer = Freezer()
        t0 = time.monotonic()
        freezer.freeze(proc.pid, False)
        res["freeze_s"] = time.monotonic() - t0
        dev = kernel.Device()
        try:
            path = os.path.join(work, "phases.img")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            t0 = time.monotonic()
            size = dev.checkpoint(proc.pid, fd)
            res["ioctl_tmpfs_s"] = time.monotonic() - t0
            os.close(fd)
            os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.posix_fallocate(fd, 0, size)
            t0 = time.monotonic()
            dev.checkpoint(proc.pid, fd)
            res["ioctl_tmpfs_fallocated_s"] = time.monotonic() - t0
            os.close(fd)
            os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            t0 = time.monotonic()
            dev.checkpoint(proc.pid, fd)
            res["ioctl_tmpfs_again_s"] = time.monotonic() - t0
            os.close(fd)
            os.unlink(path)
            res["bytes"] = size
        finally:
            dev.close()
        t0 = time.monotonic()
        freezer.thaw("kill")
        res["kill_s"] = time.monotonic() - t0
    finally:
        reap(proc.pid)
    return res


def cli_round(exe, mib, work, cmd_prefix, env):
    out = os.path.join(work, "cli.out")
    image = os.path.join(work, "cli.img")
    proc = start_program(exe, mib, out)
    try:
        secs, run = timed([*cmd_prefix, "checkpoint", str(proc.pid), "-o", image, "--kill"],
                          env=env, cwd="/")
        return {"s": secs} if run.returncode == 0 else {"error": run.stderr[-500:]}
    finally:
        reap(proc.pid)
        if os.path.exists(image):
            os.unlink(image)


# Run by the venv's python in place of its `crfs` script: the same main(), with the
# moments it reaches each phase (CLOCK_MONOTONIC, which the parent shares) on stderr.
TRACED = """
import json, sys, time
t = {"main": time.monotonic()}
import crfs.cli
t["cli imported"] = time.monotonic()
from crfs import kernel
from crfs.checkpoint import api, freezer, via_kernel
t["checkpoint imported"] = time.monotonic()


def traced(cls, name, key):
    real = getattr(cls, name)

    def wrapper(*args, **kwargs):
        t[key + " begin"] = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            t[key + " end"] = time.monotonic()
    setattr(cls, name, wrapper)


traced(freezer.Freezer, "freeze", "freeze")
traced(kernel.Device, "checkpoint", "ioctl")
traced(freezer.Freezer, "thaw", "thaw")
status = crfs.cli.main(sys.argv[1:])
t["end"] = time.monotonic()
print(json.dumps(t), file=sys.stderr)
sys.exit(status)
"""


def traced_round(exe, mib, work, venv_py):
    out = os.path.join(work, "traced.out")
    image = os.path.join(work, "traced.img")
    proc = start_program(exe, mib, out)
    try:
        t0 = time.monotonic()
        run = subprocess.run([venv_py, "-c", TRACED, "checkpoint", str(proc.pid), "-o", image,
                              "--kill"], capture_output=True, text=True, env=venv_env(),
                             cwd="/", timeout=600)
        t1 = time.monotonic()
        if run.returncode:
            return {"error": run.stderr[-500:]}
        marks = json.loads(run.stderr.strip().splitlines()[-1])
        res = {"s": t1 - t0}
        res.update({k: v - t0 for k, v in marks.items()})
        res["exit"] = t1 - t0
        return res
    finally:
        reap(proc.pid)
        if os.path.exists(image):
            os.unlink(image)


def criu_round(exe, mib, work):
    out = os.path.join(work, "criu.out")
    images = tempfile.mkdtemp(prefix="criu.", dir=work)
    proc = start_program(exe, mib, out)
    try:
        secs, run = timed(["criu", "dump", "-t", str(proc.pid), "-D", images, "-o", "d.log"])
        return {"s": secs} if run.returncode == 0 else {"error": run.stderr[-500:]}
    finally:
        reap(proc.pid)
        subprocess.run(["rm", "-rf", images])


def perf_probe(exe, mib, work, out):
    from crfs import kernel
    from crfs.checkpoint.freezer import Freezer
    proc = start_program(exe, mib, os.path.join(work, "perf.out"))
    data = os.path.join(work, "perf.data")
    try:
        freezer = Freezer()
        freezer.freeze(proc.pid, False)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-a",
                                 "-g", "-o", data], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(3)
        path = os.path.join(work, "perf.img")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with kernel.Device() as dev:
            t0 = time.monotonic()
            dev.checkpoint(proc.pid, fd)
            out["perf_ioctl_s"] = time.monotonic() - t0
        os.close(fd)
        os.unlink(path)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=120)
        freezer.thaw("kill")
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "comm,sym", "-g", "none"],
                             capture_output=True, text=True)
        out["perf"] = [line for line in rep.stdout.splitlines()
                       if line.strip() and not line.startswith("#")][:45]
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                              "--sort", "comm,sym", "-g", "none"],
                             capture_output=True, text=True)
        out["perf_err"] = rep.stderr[-800:]
        out["perf_children"] = [line for line in rep.stdout.splitlines()
                                if line.strip() and not line.startswith("#")][:45]
    finally:
        reap(proc.pid)


def guest_main(args):
    work = tempfile.mkdtemp(prefix="phases.", dir="/tmp")
    exe = os.path.join(work, "dirty_heap")
    subprocess.run(["cp", os.path.join(args.tmp, "dirty_heap"), exe], check=True)
    out = {"setup": guest_setup(args.tmp), "mib": args.mib, "runs": []}
    compile_crfs()
    if args.warm:
        t0 = time.monotonic()
        warm_memory()
        out["warm_s"] = time.monotonic() - t0
    startup(args, out)
    tools = ("phases", "tree", "venv", "criu", "traced")
    for i in range(args.runs):
        run = {}
        for tool in tools[i % len(tools):] + tools[:i % len(tools)]:
            try:
                if tool == "phases":
                    run[tool] = phases(exe, args.mib, work)
                elif tool == "tree":
                    run[tool] = cli_round(exe, args.mib, work, [sys.executable, "-m", "crfs"],
                                          tree_env())
                elif tool == "traced":
                    run[tool] = traced_round(exe, args.mib, work,
                                             os.path.join(args.venv, "bin", "python"))
                elif tool == "venv":
                    run[tool] = cli_round(exe, args.mib, work,
                                          [os.path.join(args.venv, "bin", "crfs")],
                                          venv_env())
                else:
                    run[tool] = criu_round(exe, args.mib, work)
            except Exception as exc:  # noqa: BLE001 - report, never fake a number
                run[tool] = {"error": repr(exc)}
            print(f"run {i + 1} {tool}: {json.dumps(run[tool])}", flush=True)
        out["runs"].append(run)
    if args.perf:
        try:
            perf_probe(exe, args.mib, work, out)
        except Exception as exc:  # noqa: BLE001
            out["perf_error"] = repr(exc)
    with open(os.path.join(args.tmp, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    return 0


def report(res):
    print(f"guest: {res['setup']['uname']}; insmod {res['setup'].get('insmod')}; "
          f"warm {res.get('warm_s')}")
    print("start-up (median of runs):")
    for k, v in res["startup"].items():
        print(f"  {k:28s} {v:.3f} s   {['%.2f' % x for x in res['startup_runs'][k]]}")
    keys = ("freeze_s", "ioctl_tmpfs_s", "ioctl_tmpfs_fallocated_s", "ioctl_tmpfs_again_s",
            "kill_s")
    print("phases / whole commands per run:")
    cols = {}
    for i, run in enumerate(res["runs"], 1):
        ph = run.get("phases", {})
        parts = [f"{k[:-2]} {ph[k]:.3f}" for k in keys if k in ph]
        whole = [f"{t} {run[t]['s']:.3f}" if "s" in run.get(t, {}) else
                 f"{t} ERROR {run.get(t, {}).get('error')}" for t in ("tree", "venv", "criu")]
        print(f"  run {i}: " + ", ".join(parts + whole))
        for k in keys:
            if k in ph:
                cols.setdefault(k, []).append(ph[k])
        for t in ("tree", "venv", "criu"):
            if "s" in run.get(t, {}):
                cols.setdefault(t, []).append(run[t]["s"])
    traces = [run["traced"] for run in res["runs"] if "s" in run.get("traced", {})]
    if traces:
        print("traced venv checkpoint, seconds from spawn (median of runs):")
        for key in traces[0]:
            values = [t[key] for t in traces if key in t]
            print(f"  {key:22s} {statistics.median(values):.3f}   "
                  f"{['%.2f' % v for v in values]}")
    med = {k: statistics.median(v) for k, v in cols.items()}
    print("medians: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    if "criu" in med:
        for t in ("tree", "venv"):
            if t in med:
                print(f"  crfs checkpoint ({t}) / criu dump = {med[t] / med['criu']:.2f}")
    imp = sorted(res.get("importtime", []),
                 key=lambda s: -int(s.split("|")[1]) if s.split("|")[1].strip().isdigit()
                 else 0)
    print("importtime (venv, largest cumulative):")
    for line in imp[:25]:
        print("  " + line)
    for key in ("perf", "perf_children"):
        if key in res:
            print(f"{key} (ioctl {res.get('perf_ioctl_s', 0):.3f} s):")
            for line in res[key]:
                print("  " + line)
    if res.get("perf_err"):
        print("perf stderr:", res["perf_err"])
    if "perf_error" in res:
        print("perf error:", res["perf_error"])


def host_main(args):
    missing = host_ready()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="crfs-phases.", dir="/tmp"))
    try:
        if not build_kmod(tmp):
            return 2
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(tmp / "dirty_heap"),
                        str(ROOT / "bench" / "dirty_heap.c")], check=True)
        venv = Path(f"{tmp}-venv")
        make_venv(venv)
        run_guest(tmp, __file__, ["--mib", str(args.mib), "--runs", str(args.runs),
                                  "--venv", str(venv)]
                  + (["--perf"] if args.perf else []) + (["--warm"] if args.warm else []),
                  args.timeout)
        results = tmp / "results.json"
        if not results.exists():
            print("no results from the guest", file=sys.stderr)
            return 1
        report(json.loads(results.read_text()))
        return 0
    finally:
        subprocess.run(["rm", "-rf", str(tmp), f"{tmp}-venv"])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--perf", action="store_true")
    parser.add_argument("--warm", action="store_true",
                        help="write the guest's free memory once first (warm_memory)")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--venv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return guest_main(args) if args.in_guest else host_main(args)


if __name__ == "__main__":
    sys.exit(main())
