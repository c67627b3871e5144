"""Kernel campaign: mutated real images through /dev/crfs in the qemu guest, for longer
than the test suite's `fuzz` step.

    python fuzz/kmod_fuzz.py [--checks 100000] [--check-seconds 1800] [--restarts 1000]
                             [--restart-seconds 600] [--restart-workers 1] [--seed 1]
                             [--only-restore-target] [--keep DIR] [SEED.img ...]

Builds the module out of the tree (as tests/test_kmod_guest.py does), crfs-restart,
restore_target and the other guest steps' targets (tests/guest_fuzz_seeds.py), boots one
guest (kmod/harness/run-in-guest), loads the module, makes the seeds there (restore_target
and, unless --only-restore-target, eleven other targets, each checkpointed by the module
and by crfs's writer, plus any SEED.img given) and runs tests/guest_fuzz.py's campaign:
structure-aware mutations through CHECK, a sample through RESTART (crfs-restart in a
child, killed if it restores; --restart-workers at a time), bad ioctl arguments. Prints
the figures and writes them to DIR/results.json.

Passes (exit 0) when the guest ends cleanly (no WARN, BUG, Oops, panic or hang: the
harness's status), every refusal is an expected errno with a reason, no bad argument is
accepted, and dmesg has nothing to report.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KMOD = os.path.join(ROOT, "kmod")


def build(work):
    """The module, crfs-restart and restore_target built in `work`; their paths."""
    build_dir = os.path.join(work, "kmod")
    os.makedirs(build_dir)
    for name in os.listdir(KMOD):
        if name.endswith((".c", ".h")) or name in ("Kbuild", "Makefile"):
            shutil.copy(os.path.join(KMOD, name), build_dir)
    subprocess.run(["make", "-C", build_dir], check=True, capture_output=True)
    target = os.path.join(work, "restore_target")
    subprocess.run(["gcc", "-m64", "-O0", "-g", "-o", target,
                    os.path.join(ROOT, "tests", "c", "restore_target.c")], check=True)
    return (os.path.join(build_dir, "crfs.ko"), os.path.join(build_dir, "crfs-restart"),
            target)


def build_targets(work):
    """The other guest steps' targets (tests/guest_fuzz_seeds.py) built in WORK/targets."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import guest_fuzz_seeds
    out = os.path.join(work, "targets")
    os.makedirs(out, exist_ok=True)
    guest_fuzz_seeds.build(os.path.join(ROOT, "tests", "c"), out)
    return out


def verdict(result):
    """The reasons the campaign failed, [] on a pass."""
    problems = []
    for phase in ("check", "restart"):
        stats = result.get(phase, {})
        if stats.get("no_reason_count"):
            problems.append(f"{phase}: refusals without a reason: {stats['no_reason']}")
        if stats.get("unexpected"):
            problems.append(f"{phase}: unexpected outcomes: {stats['unexpected']}")
    if result.get("arguments", {}).get("succeeded"):
        problems.append(f"bad arguments accepted: {result['arguments']['succeeded']}")
    outcomes = result.get("restart_arguments", {})
    if "ok" in outcomes or "no report" in outcomes:
        problems.append(f"RESTART arguments: {outcomes}")
    if result.get("dmesg_problems"):
        problems.append(f"dmesg: {result['dmesg_problems'][:5]}")
    if result.get("rmmod"):
        problems.append("rmmod failed")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=100000)
    parser.add_argument("--check-seconds", type=float, default=1800)
    parser.add_argument("--restarts", type=int, default=1000)
    parser.add_argument("--restart-seconds", type=float, default=600)
    parser.add_argument("--arguments", type=int, default=20000)
    parser.add_argument("--restart-workers", type=int, default=1,
                        help="RESTARTs at a time (the guest has 2 CPUs)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only-restore-target", action="store_true",
                        help="no seeds of the other steps' targets (timers, anonfd, unix, "
                             "pipes, state, exe_memfd, deleted, fown, tree)")
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    parser.add_argument("images", nargs="*", help="more seed images (ckpt, x86_64)")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="crfs-kfuzz-", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    module, restarter, target = build(work)
    seeds = []
    for n, image in enumerate(args.images):
        seeds.append(os.path.join(work, f"seed{n}.img"))
        shutil.copy(image, seeds[-1])
    results = os.path.join(work, "results.json")
    timeout = int(args.check_seconds + args.restart_seconds + 1500)
    env = {"CRFS_FUZZ_SEED": args.seed, "CRFS_FUZZ_CHECKS": args.checks,
           "CRFS_FUZZ_CHECK_SECONDS": args.check_seconds, "CRFS_FUZZ_RESTARTS": args.restarts,
           "CRFS_FUZZ_RESTART_SECONDS": args.restart_seconds,
           "CRFS_FUZZ_ARGUMENTS": args.arguments,
           "CRFS_FUZZ_RESTART_WORKERS": args.restart_workers, "CRFS_FUZZ_KEEP": work}
    if not args.only_restore_target:
        env["CRFS_FUZZ_TARGETS"] = build_targets(work)
    cmd = ["bash", os.path.join(KMOD, "harness", "run-in-guest"), "-q", "-t", str(timeout),
           "-w", work, "-e", f"PYTHONPATH={ROOT}:{os.path.join(ROOT, 'tests')}",
           *[opt for k, v in env.items() for opt in ("-e", f"{k}={v}")], "-C", ROOT, "--",
           sys.executable, os.path.join(ROOT, "tests", "guest_fuzz.py"), module, restarter,
           target, results, *seeds]
    run = subprocess.run(cmd, capture_output=True, text=True)
    print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
    if not os.path.exists(results):
        print(f"no results (harness status {run.returncode})")
        return 1
    with open(results) as f:
        result = json.load(f)
    print(json.dumps({k: result.get(k) for k in ("seeds", "seed_checkpoints", "seed_check",
                                                  "check", "restart",
                                                  "arguments", "restart_arguments",
                                                  "t_check", "t_restart")}, indent=1))
    problems = verdict(result) + ([f"harness status {run.returncode}"]
                                  if run.returncode else [])
    print("PASS" if not problems else "FAIL:\n" + "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
