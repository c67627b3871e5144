"""The parts of the one qemu guest boot of a pytest session (tests/conftest.py `guest_boot`).

Project rule (CI budget): ONE guest boot per pytest session. Each test module that needs the
guest has a part here: a prepare function does the host-side work (build crfs.ko, images,
DKMS...) and returns what the guest runs. `boot` runs kmod/harness/run-in-guest once with
tests/guest_all.py, which runs the parts in ORDER, each with its own timeout, and always goes
on with the next. A part runs when one of its module's tests that use the guest is selected
(fixture `guest_boot`, or the mark `guest_part` for a getfixturevalue) and, when set, it is
named in $CRFS_GUEST_PARTS (comma-separated).

prepare(work, build_c, tmp_path_factory) -> dict:
    argv      the guest command             results  the JSON file it writes (or None)
    env       extra environment for it      unset    variables removed from it
    timeout   its seconds in the guest      memory   guest RAM it needs ("2G"), optional
    kver      the kernel it needs, optional host     anything for the host's tests
or raises Unavailable(why) (its tests skip, or fail when CI=true).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KMOD = REPO / "kmod"
HARNESS = KMOD / "harness"
ORDER = ("kmod", "criu", "packaging")   # kmod first: its dmesg/kmemleak checks are its own
MODULES = {"kmod": "test_kmod_guest.py", "criu": "test_criu_guest.py",
           "packaging": "test_packaging.py"}
PREPARE = {}
BOOTS = []          # one row per run-in-guest of this session (conftest reports the count)


class Unavailable(Exception):
    """A part cannot run here (no criu, no dkms, no ../shared...): why."""


def part(name):
    """Decorator: the prepare function of part `name`."""
    def register(function):
        PREPARE[name] = function
        return function
    return register


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def kernel_installed():
    for build in glob.glob("/lib/modules/*-amd64/build/Makefile"):
        version = build.split("/")[3]
        if os.path.exists(f"/boot/vmlinuz-{version}"):
            return True
    return False


def debian_kver():
    """The newest /lib/modules/*-amd64 with headers (as kmod/Makefile picks it), or None."""
    found = sorted((d.name for d in Path("/lib/modules").glob("*-amd64")
                    if (d / "build" / "Makefile").exists()),
                   key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)])
    return found[-1] if found else None


def dkms_conf():
    return dict(re.findall(r'^(\w+(?:\[0\])?)="(.*)"$', (KMOD / "dkms.conf").read_text(),
                           re.M))


def build_kmod(work):
    """crfs.ko and crfs-restart built in a copy of kmod/ under work: the build dir."""
    build = work / "kmod"
    build.mkdir()
    for name in os.listdir(KMOD):
        if name.endswith((".c", ".h")) or name in ("Kbuild", "Makefile"):
            shutil.copy(KMOD / name, build / name)
    make = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True)
    assert make.returncode == 0, make.stdout + make.stderr
    assert "warning" not in (make.stdout + make.stderr).lower(), make.stdout + make.stderr
    return build


# --------------------------------------------------------------------------- parts

@part("criu")
def prepare_criu(work, build_c, tmp_path_factory):
    """tests/criu_guest_checks.py: criu dumps a real program, crfs converts, crfs.ko
    restarts it."""
    if not shutil.which("criu"):
        raise Unavailable("criu is not installed")
    build = build_kmod(work)
    exe = work / "dirty_heap"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(REPO / "bench" / "dirty_heap.c")],
                   check=True)
    ns_exe = work / "ns_prog"           # the namespaces/SysV/inet check (test_criu_ns too)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(ns_exe),
                    str(REPO / "tests" / "data" / "criu" / "ns_prog.c")], check=True)
    results = work / "results.json"
    return {"argv": [sys.executable, str(REPO / "tests" / "criu_guest_checks.py"),
                     str(build / "crfs.ko"), str(build / "crfs-restart"), str(exe),
                     str(results), str(ns_exe)],
            "results": results, "timeout": int(os.environ.get("CRFS_CRIU_GUEST_TIMEOUT", 600))}


def dkms_install(top, kver):
    """crfs.ko built and installed by dkms into private trees under top: (ko, steps)."""
    version = dkms_conf()["PACKAGE_VERSION"]
    src = top / "src" / f"crfs-{version}"
    src.mkdir(parents=True)
    for path in KMOD.iterdir():
        if path.suffix in (".c", ".h") or path.name in ("Kbuild", "Makefile", "dkms.conf"):
            shutil.copy(path, src)
    (top / "inst" / kver).mkdir(parents=True)
    (top / "tree").mkdir()
    trees = ["--dkmstree", str(top / "tree"), "--sourcetree", str(top / "src")]
    steps = {}
    for step in (["add"], ["build", "-k", kver], ["install", "-k", kver,
                                                   "--installtree", str(top / "inst"),
                                                   "--no-depmod"]):
        result = subprocess.run(["dkms", step[0], "-m", "crfs", "-v", version, *trees,
                                 *step[1:]], capture_output=True, text=True, timeout=900)
        steps[step[0]] = {"rc": result.returncode, "stdout": result.stdout,
                          "stderr": result.stderr}
        if result.returncode:
            return None, steps
    make_log = top / "tree" / "crfs" / version / kver / "x86_64" / "log" / "make.log"
    steps["make.log"] = make_log.read_text() if make_log.exists() else ""
    return top / "inst" / kver / "updates" / "dkms" / "crfs.ko", steps


@part("packaging")
def prepare_packaging(work, build_c, tmp_path_factory):
    """DKMS builds and installs crfs.ko on the host; tests/packaging_guest.py loads it and
    restarts a real program with the installed pieces."""
    kver = debian_kver()
    if shutil.which("dkms") is None or kver is None:
        raise Unavailable("no dkms or no Debian kernel headers (kmod/harness/setup installs "
                          "them)")
    ko, steps = dkms_install(work / "dkms", kver)
    prepared = {"host": {"kver": kver, "ko": ko, "steps": steps}, "kver": kver}
    if ko is None:
        return {**prepared, "argv": None}
    if not Path(f"/boot/vmlinuz-{kver}").exists():
        return {**prepared, "argv": None, "why_not": f"no guest kernel /boot/vmlinuz-{kver}"}
    out = work / "guest"
    out.mkdir()
    program = build_c("ckpt_counter", 64)
    return {**prepared, "timeout": 300, "unset": ["CRFS_RESTARTER"],
            "argv": [sys.executable, str(REPO / "tests" / "packaging_guest.py"), str(ko),
                     str(program), str(out)],
            "results": out / "result.json"}


# --------------------------------------------------------------------------- the boot

def selected_parts(items):
    """The parts with a selected test, in ORDER, and as $CRFS_GUEST_PARTS allows."""
    wanted = os.environ.get("CRFS_GUEST_PARTS")
    modules = {item.path.name for item in items
               if "guest_boot" in getattr(item, "fixturenames", ())
               or item.get_closest_marker("guest_part")}
    return [name for name in ORDER if MODULES[name] in modules and name in PREPARE
            and (not wanted or name in wanted.split(","))]


def _prepare_all(names, work, build_c, tmp_path_factory):
    parts = {}
    for name in names:
        sub = work / name
        sub.mkdir()
        t0 = time.monotonic()
        try:
            prepared = PREPARE[name](sub, build_c, tmp_path_factory)
        except Unavailable as e:
            prepared = {"skipped": str(e)}
        except Exception:       # its tests fail with this; the other parts still run
            prepared = {"error": traceback.format_exc()}
        prepared["prepare_seconds"] = round(time.monotonic() - t0, 1)
        parts[name] = prepared
    return parts


def _kver(parts):
    wanted = {p["kver"] for p in parts.values() if p.get("kver")}
    if len(wanted) > 1:
        raise AssertionError(f"the guest parts want different kernels: {sorted(wanted)}")
    return wanted.pop() if wanted else None


def boot(items, work, build_c, tmp_path_factory):
    """Prepare the selected parts, boot the guest once for those that can run: {name: the
    part's result} (see result())."""
    names = selected_parts(items)
    if not names:
        return {}
    if not (shutil.which("qemu-system-x86_64") and kernel_installed()):
        why = ("qemu-system-x86_64 or Debian's *-amd64 kernel + headers are not installed "
               "(run kmod/harness/setup)")
        return {name: {"skipped": why} for name in names}
    parts = _prepare_all(names, work, build_c, tmp_path_factory)
    running = [n for n in names if parts[n].get("argv")]
    if not running:
        return parts
    plan = {"parts": [{"name": n, "argv": parts[n]["argv"], "env": parts[n].get("env", {}),
                       "unset": parts[n].get("unset", []), "timeout": parts[n]["timeout"],
                       "cwd": str(REPO)} for n in running]}
    (work / "plan.json").write_text(json.dumps(plan, indent=1))
    timeout = sum(p["timeout"] for p in plan["parts"]) + 120
    memory = ["-m", "2G"] if any(parts[n].get("memory") == "2G" for n in running) else []
    kver = _kver({n: parts[n] for n in running})
    cmd = ["bash", str(HARNESS / "run-in-guest"), "-q", "-t", str(timeout), *memory,
           *(["-k", kver] if kver else []), "-w", str(work), "-e", f"PYTHONPATH={REPO}",
           "-C", str(REPO), "--", sys.executable, str(REPO / "tests" / "guest_all.py"),
           str(work / "plan.json")]
    t0 = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    seconds = time.monotonic() - t0
    BOOTS.append({"parts": running, "rc": run.returncode, "seconds": round(seconds, 1)})
    print(f"\nguest boot #{len(BOOTS)} of this session: parts {','.join(running)}, "
          f"{seconds:.1f}s, harness status {run.returncode}")
    status_path = work / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for name in running:
        _collect(parts[name], status.get(name), run)
    return parts


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except (OSError, TypeError):
        return ""


def _collect(prepared, row, run):
    """The part's rc (the harness's when the kernel had a problem or the guest timed out or
    died: 121..125), its output, its results JSON."""
    rc = row["rc"] if row else None
    if run.returncode >= 121 or rc is None:
        rc = run.returncode
    results = prepared.get("results")
    prepared.update({
        "rc": rc, "part_status": row, "harness_rc": run.returncode,
        "stdout": _read(row and row.get("stdout")),
        "stderr": _read(row and row.get("stderr")) + "\n--- harness ---\n" + run.stderr
        + run.stdout[-3000:],
        "report": json.loads(Path(results).read_text())
        if results and Path(results).exists() else None})


def result(parts, name):
    """Part `name`'s result for its tests' fixture: skips (fails in CI) when it could not
    run, fails when its preparation failed."""
    found = parts.get(name)
    if found is None:
        pytest.skip(f"guest part {name} not selected (CRFS_GUEST_PARTS)")
    if "error" in found:
        pytest.fail(f"guest part {name}: preparation failed:\n{found['error']}")
    if "skipped" in found:
        if in_ci():
            pytest.fail(f"CI: {found['skipped']}")
        pytest.skip(found["skipped"])
    return found
