#!/usr/bin/env python3
"""Benchmark: checkpoint + restart of CRIU's zdtm test programs, crfs vs criu, in the guest.

Issue #11: mean checkpoint + restart time per zdtm test (../shared/zdtm/tests.txt), crfs
against `criu dump` + `criu restore -d` in the same qemu guest (kmod/harness, Debian's 6.1
kernel under TCG), as a ratio, over the tests both pass.

The host builds crfs.ko and crfs-restart (a temporary copy of kmod/) and the zdtm programs (a
temporary copy of ../shared/zdtm: make -C lib libzdtmtst.a; make -C static TESTS), then boots
ONE guest (-m 2G) that runs this script with --in-guest. The guest loads crfs.ko, brings up
`lo` and loads the modules criu's kernel-feature probe needs (as bench/restart_vs_criu.py),
runs `criu check` once, then for each test, both tools in turn (which goes first alternates
from test to test), with the protocol of ../shared/zdtm/README.md and tests/guest_zdtm.py
(the test suite's runner: its start, verdict and clean-up):

  criu  `make TEST.pid`; timed: `criu dump -t PID -D DIR --shell-job` (kills the tree), then
        `criu restore -D DIR --shell-job -d` (returns once the tree runs);
  crfs  `make TEST.pid`; timed: `crfs checkpoint PID --tree -o IMG --kill` as root runs it,
        by the compiled front (kmod/crfs-front, docs/checkpoint.md "The compiled front"),
        with no Python `crfs` on PATH (a checkpoint it handed on would fail, not be
        timed), then `crfs-restart -r FD IMG` (crfs.kernel.restart_in_child) until its
        answer;

then SIGTERM to the restored root and TEST.out: PASS or FAIL. Every command is timed from
spawn (start-up included), images in the guest's tmpfs.
Reported: per test the four times and both verdicts; the mean of checkpoint + restart per
tool over the tests both pass and its ratio crfs / criu; and, as extra information, the same
over the tests where both tools' commands succeeded (whatever the verdict).

Nothing is installed: without criu (apt-get install criu), the harness (bash
kmod/harness/setup) or ../shared/zdtm the script says so and exits 2.
"""

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from crfs import kernel  # noqa: E402 - the repository's, not an installed one
import guest_zdtm  # noqa: E402 - the test suite's zdtm runner (tests/guest_zdtm.py)
from guest_bench import build_kmod, guest_setup, host_ready, run_guest  # noqa: E402

SHARED_ZDTM = ROOT.parent / "shared" / "zdtm"
LIMIT = 60     # seconds for each command
START_LIMITS = {"maps04": 90}    # seconds to start (the test suite's): 512 MiB to fill

# ----------------------------------------------------------------------------- guest side


def timed(cmd, **kwargs):
    """(seconds, CompletedProcess or None on timeout) of a command, from spawn."""
    t0 = time.monotonic()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT,
                             start_new_session=True, **kwargs)
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, None
    return time.monotonic() - t0, run


def why(run, what, log=None):
    if run is None:
        return f"{what}: no answer within {LIMIT}s"
    text = (run.stdout + run.stderr).strip()
    if log and os.path.exists(log):
        with open(log, errors="replace") as f:
            errors = [line.strip() for line in f if "Error" in line]
        text += (" | " + " / ".join(errors[:3])) if errors else ""
    return f"{what}: status {run.returncode}: {text[-300:]}"


def criu_round(name, static, work, command, limit):
    images = os.path.join(work, f"criu-{name}")
    os.makedirs(images)
    out, sessions = {}, set()
    try:
        pid, error = guest_zdtm.start(name, static, sessions, command, limit)
        if error:
            return {"error": f"start: {error}"}
        out["dump_s"], run = timed(guest_zdtm.criu_dump_argv(pid, images))
        if run is None or run.returncode:
            return {**out, "error": why(run, "criu dump", os.path.join(images, "dump.log"))}
        reap_all()    # the killed tree came back to us (subreaper): its pids free again
        out["restore_s"], run = timed(["criu", "restore", "-D", images, "--shell-job", "-d",
                                       "-o", "restore.log"])
        if run is None or run.returncode:
            return {**out, "error": why(run, "criu restore",
                                        os.path.join(images, "restore.log"))}
        sessions.add(guest_zdtm.session_of(pid))
        verdict = guest_zdtm.result(name, static, pid, lambda: "ended", None)
        out.update(verdict=verdict["result"], reason=verdict.get("reason", ""))
        return out
    finally:
        guest_zdtm.kill_sessions(sessions)
        shutil.rmtree(images, ignore_errors=True)


def crfs_round(name, static, work, restarter, command, limit):
    image = os.path.join(work, f"{name}.img")
    front = os.path.join(os.path.dirname(restarter), "crfs-front")
    out, sessions, process = {}, set(), None
    try:
        pid, error = guest_zdtm.start(name, static, sessions, command, limit)
        if error:
            return {"error": f"start: {error}"}
        out["dump_s"], run = timed([front, "checkpoint", str(pid), "--tree", "-o", image,
                                    "--kill"], env={**os.environ, "PATH": guest_zdtm.NO_CLI})
        if run is None or run.returncode:
            return {**out, "error": why(run, "crfs checkpoint")}
        reap_all()
        os.chdir(guest_zdtm.ELSEWHERE)
        with open(os.path.join(work, f"{name}.log"), "wb") as log:
            t0 = time.monotonic()
            outcome = kernel.restart_in_child(image, restarter=restarter, stdout=log,
                                              timeout=LIMIT)
        out["restore_s"] = time.monotonic() - t0
        if outcome.errno:
            return {**out, "error": f"crfs-restart: {outcome.stage}: {outcome.reason}"}
        process = outcome.process
        root = outcome.pid or process.pid
        for p in (root, process.pid):
            sessions.add(guest_zdtm.session_of(p))
        verdict = guest_zdtm.result(name, static, root, lambda: guest_zdtm.ended(process),
                                    os.path.join(work, f"{name}.log"))
        out.update(verdict=verdict["result"], reason=verdict.get("reason", ""))
        return out
    finally:
        guest_zdtm.kill_sessions(sessions)
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if os.path.exists(image):
            os.unlink(image)


def reap_all():
    """Reap whatever came back to us (we are a subreaper: criu -d's trees do)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def guest_main(args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)     # PR_SET_CHILD_SUBREAPER
    work = tempfile.mkdtemp(prefix="zvc.", dir="/tmp")     # the guest's tmpfs
    if os.path.exists(guest_zdtm.WORK):
        shutil.rmtree(guest_zdtm.WORK)
    shutil.copytree(os.path.join(args.tmp, "zdtm"), guest_zdtm.WORK, symlinks=True)
    os.makedirs(guest_zdtm.ELSEWHERE, exist_ok=True)
    static = os.path.join(guest_zdtm.WORK, "static")
    restarter = os.path.join(args.tmp, "kmod", "crfs-restart")
    setup = guest_setup(args.tmp)
    with open(os.path.join(args.tmp, "setup.json"), "w") as f:
        json.dump(setup, f)
    with open(os.path.join(args.tmp, "commands.json")) as f:
        commands = json.load(f)
    with open(os.path.join(args.tmp, "results.jsonl"), "a") as results:
        for i, name in enumerate(args.tests.split(",")):
            row = {"test": name}
            for tool in (("criu", "crfs") if i % 2 == 0 else ("crfs", "criu")):
                guest_zdtm.clean(static, name)
                command, limit = commands.get(name), START_LIMITS.get(name, guest_zdtm.START)
                try:
                    row[tool] = (criu_round(name, static, work, command, limit)
                                 if tool == "criu" else
                                 crfs_round(name, static, work, restarter, command, limit))
                except Exception as exc:   # noqa: BLE001 - report, never fake a number
                    row[tool] = {"error": repr(exc)}
                reap_all()
            results.write(json.dumps(row) + "\n")
            results.flush()
            print(f"{name}: {json.dumps(row)[:300]}", flush=True)
    subprocess.run(["rmmod", "crfs"], capture_output=True)
    return 0


# ----------------------------------------------------------------------------- host side


def fmt(value):
    return "—" if value is None else f"{value:.2f} s"


def verdict(r):
    if "error" in r:
        return "error: " + r["error"][:90].replace("|", "/")
    if r.get("verdict") == "PASS":
        return "PASS"
    return "FAIL: " + r.get("reason", "")[:90].replace("|", "/")


def total(r):
    if "error" in r or r.get("dump_s") is None or r.get("restore_s") is None:
        return None
    return r["dump_s"] + r["restore_s"]


def report(setup, rows):
    print(f"guest: kernel {setup['uname']}, {int(setup['mem_total']) // 1024} MiB, TCG; "
          f"{setup['criu_version']}; crfs.ko insmod: {setup['insmod']}")
    print(f"criu check: {setup['criu_check'].splitlines()[0]}")
    print()
    print("| test | criu dump | criu restore | criu | crfs checkpoint | crfs restart | crfs |")
    print("|---|---|---|---|---|---|---|")
    both_pass, both_ran = [], []
    for row in rows:
        c, f = row.get("criu", {}), row.get("crfs", {})
        print(f"| {row['test']} | {fmt(c.get('dump_s'))} | {fmt(c.get('restore_s'))} | "
              f"{verdict(c)} | {fmt(f.get('dump_s'))} | {fmt(f.get('restore_s'))} | "
              f"{verdict(f)} |")
        if total(c) is not None and total(f) is not None:
            both_ran.append((total(c), total(f), c, f))
            if c.get("verdict") == f.get("verdict") == "PASS":
                both_pass.append((total(c), total(f), c, f))
    print()
    passed = {t: sum(r.get(t, {}).get("verdict") == "PASS" for r in rows)
              for t in ("criu", "crfs")}
    print(f"PASS: criu {passed['criu']}/{len(rows)}, crfs {passed['crfs']}/{len(rows)}")
    for label, group in (("tests both pass", both_pass),
                         ("tests where both tools' commands succeeded (any verdict)",
                          both_ran)):
        if not group:
            print(f"{label}: none, no ratio")
            continue
        criu = statistics.mean(g[0] for g in group)
        crfs = statistics.mean(g[1] for g in group)
        parts = {k: statistics.mean(g[i][k] for g in group)
                 for i, k in ((2, "dump_s"), (2, "restore_s"))}
        crfs_parts = {k: statistics.mean(g[3][k] for g in group) for k in ("dump_s",
                                                                            "restore_s")}
        print(f"{label} ({len(group)}): mean checkpoint + restart: criu {criu:.2f} s "
              f"(dump {parts['dump_s']:.2f} + restore {parts['restore_s']:.2f}), crfs "
              f"{crfs:.2f} s (checkpoint {crfs_parts['dump_s']:.2f} + restart "
              f"{crfs_parts['restore_s']:.2f}); ratio crfs/criu **{crfs / criu:.2f}** "
              f"(checkpoint/dump {crfs_parts['dump_s'] / parts['dump_s']:.2f}, "
              f"restart/restore {crfs_parts['restore_s'] / parts['restore_s']:.2f})")
    return 0


def build(tmp, names):
    if not build_kmod(tmp):
        return False
    zdtm = tmp / "zdtm"
    shutil.copytree(SHARED_ZDTM, zdtm)
    for cmd in (["make", "-s", "-C", str(zdtm / "lib"), "libzdtmtst.a"],
                ["make", "-s", f"-j{os.cpu_count() or 1}", "-C", str(zdtm / "static"), *names]):
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            print(run.stdout + run.stderr, file=sys.stderr)
            return False
    commands = guest_zdtm.start_commands(zdtm / "static", names)
    (tmp / "commands.json").write_text(json.dumps(commands))
    return True


def host_main(args):
    missing = host_ready()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    if not (SHARED_ZDTM / "tests.txt").exists():
        print(f"{SHARED_ZDTM} is absent (the zdtm programs are in ../shared)", file=sys.stderr)
        return 2
    names = args.tests.split(",") if args.tests else [
        line.strip() for line in (SHARED_ZDTM / "tests.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")]
    tmp = Path(tempfile.mkdtemp(prefix="crfs-bench-zdtm.", dir="/tmp"))
    try:
        t0 = time.monotonic()
        if not build(tmp, names):
            return 2
        print(f"host: built crfs.ko, crfs-restart and {len(names)} zdtm programs in "
              f"{time.monotonic() - t0:.1f} s; booting the guest", flush=True)
        run_guest(tmp, __file__, ["--tests", ",".join(names)], args.timeout, quiet=True)
        results, setup = tmp / "results.jsonl", tmp / "setup.json"
        if not (results.exists() and setup.exists()):
            print("no results from the guest", file=sys.stderr)
            return 1
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        return report(json.loads(setup.read_text()), rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", help="comma-separated zdtm tests (default: tests.txt)")
    parser.add_argument("--timeout", type=int, default=1800, help="guest timeout, s (1800)")
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_guest:
        return guest_main(args)
    return host_main(args)


if __name__ == "__main__":
    sys.exit(main())
