"""The one guest command of a pytest session (tests/conftest.py `guest_boot`, run by
kmod/harness/run-in-guest): run each part of PLAN_JSON in order, each with its own argv,
environment and timeout, its stdout/stderr in files next to the plan; record its status
and always go on with the next part. crfs.ko is unloaded between parts (each part loads its
own build of it).

usage: guest_all.py PLAN_JSON   (writes status.json next to it, after every part)
"""

import json
import os
import signal
import subprocess
import sys
import time


def run_part(part, outdir):
    env = {**os.environ, **part.get("env", {})}
    for name in part.get("unset", []):
        env.pop(name, None)
    out = os.path.join(outdir, f"{part['name']}.out")
    err = os.path.join(outdir, f"{part['name']}.err")
    t0 = time.monotonic()
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(part["argv"], env=env, cwd=part.get("cwd"), stdout=stdout,
                                stderr=stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=part["timeout"])
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
    try:                                # what the part left behind in its session
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return {"rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - t0, 1),
            "stdout": out, "stderr": err}


def unload_crfs():
    if not os.path.exists("/sys/module/crfs"):
        return None
    unload = subprocess.run(["rmmod", "crfs"], capture_output=True, text=True)
    return {"rc": unload.returncode, "stderr": unload.stderr}


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    outdir = os.path.dirname(plan_path)
    status, failed = {}, False
    for part in plan["parts"]:
        print(f"[guest_all] part {part['name']}: {' '.join(part['argv'])}", flush=True)
        try:
            status[part["name"]] = row = run_part(part, outdir)
        except OSError as e:
            status[part["name"]] = row = {"rc": None, "error": str(e)}
        row["rmmod_after"] = unload_crfs()
        failed = failed or row["rc"] != 0
        print(f"[guest_all] part {part['name']}: rc {row['rc']}, "
              f"{row.get('seconds', 0)}s", flush=True)
        with open(plan_path + ".status.tmp", "w") as f:
            json.dump(status, f, indent=1)
        os.replace(plan_path + ".status.tmp", os.path.join(outdir, "status.json"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
