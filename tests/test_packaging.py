"""Packaging: kmod/dkms.conf builds and installs crfs.ko with DKMS (private trees, Debian's
6.1 headers: nothing goes into the host's module tree), the guest loads the installed
module and restarts a real program with `crfs restart`; the udev rule and the installed
restarter."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import crfs
from crfs import kernel

REPO = Path(__file__).parent.parent
KMOD = REPO / "kmod"
HARNESS = KMOD / "harness"


def dkms_conf():
    return dict(re.findall(r'^(\w+(?:\[0\])?)="(.*)"$', (KMOD / "dkms.conf").read_text(),
                           re.M))


def debian_kver():
    """The newest /lib/modules/*-amd64 with headers (as kmod/Makefile picks it), or None."""
    found = sorted((d.name for d in Path("/lib/modules").glob("*-amd64")
                    if (d / "build" / "Makefile").exists()),
                   key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)])
    return found[-1] if found else None


def test_dkms_conf_matches_crfs():
    conf = dkms_conf()
    assert conf["PACKAGE_NAME"] == "crfs"
    assert conf["PACKAGE_VERSION"] == crfs.__version__
    assert conf["BUILT_MODULE_NAME[0]"] == "crfs"
    assert "KDIR=${kernel_source_dir}" in conf["MAKE[0]"]


def test_udev_rule_keeps_the_device_root_only():
    rule = (KMOD / "99-crfs.rules").read_text()
    (line,) = [ln for ln in rule.splitlines() if ln and not ln.startswith("#")]
    assert 'KERNEL=="crfs"' in line and 'MODE="0600"' in line and 'OWNER="root"' in line


@pytest.fixture(scope="module")
def dkms_module(tmp_path_factory):
    """crfs.ko built and installed by dkms into private trees, for Debian's kernel."""
    kver = debian_kver()
    if shutil.which("dkms") is None or kver is None:
        pytest.skip("no dkms or no Debian kernel headers (kmod/harness/setup installs them)")
    top = tmp_path_factory.mktemp("dkms")
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
        steps[step[0]] = result
        assert result.returncode == 0, result.stdout + result.stderr
    make_log = top / "tree" / "crfs" / version / kver / "x86_64" / "log" / "make.log"
    steps["make.log"] = make_log.read_text() if make_log.exists() else ""
    return kver, top / "inst" / kver / "updates" / "dkms" / "crfs.ko", steps


def test_dkms_builds_and_installs(dkms_module):
    kver, ko, steps = dkms_module
    assert ko.exists(), steps["install"].stdout
    info = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True,
                          text=True, check=True).stdout
    assert info.split()[0] == kver
    assert "CC [M]" in steps["make.log"] and "warning" not in steps["make.log"].lower()


def test_restarter_is_installed_root_only():
    """After .ci/setup (kmod/install): root-owned 0755, and the daemon's first choice."""
    path = kernel.INSTALLED_RESTARTER
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed (bash kmod/install as root)")
    st = os.stat(path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    assert kernel.unsafe_restarter(path) is None
    env = {k: v for k, v in os.environ.items() if k != "CRFS_RESTARTER"}
    found = subprocess.run([sys.executable, "-c", "from crfs import kernel; "
                            "print(kernel.find_restarter())"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert found == path


@pytest.fixture(scope="module")
def guest(dkms_module, build_c, tmp_path_factory):
    kver, ko, _ = dkms_module
    if not (HARNESS / "run-in-guest").exists() or not Path(f"/boot/vmlinuz-{kver}").exists():
        pytest.skip("no guest kernel")
    out = tmp_path_factory.mktemp("guest")
    program = build_c("ckpt_counter", 64)
    env = {k: v for k, v in os.environ.items() if k != "CRFS_RESTARTER"}
    cmd = ["bash", str(HARNESS / "run-in-guest"), "-q", "-t", "300", "-k", kver,
           "-w", str(out), "-e", f"PYTHONPATH={REPO}", "-C", str(REPO), "--",
           sys.executable, str(REPO / "tests" / "packaging_guest.py"), str(ko), str(program),
           str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    result = out / "result.json"
    assert result.exists(), f"guest status {run.returncode}:\n{run.stdout[-3000:]}" \
                            f"\n{run.stderr[-3000:]}"
    assert run.returncode == 0, run.stdout[-3000:]
    return json.loads(result.read_text())


def test_guest_loads_the_dkms_module(guest):
    assert guest["insmod"]["rc"] == 0, guest["insmod"]
    assert guest["device_mode"] == "0o600"
    doctor = json.loads(guest["doctor"]["stdout"])
    module = next(c for c in doctor["checks"] if c["name"] == "module")
    assert module["ok"] and module["detail"] == \
        f"/dev/crfs, ABI version {kernel.CRFS_ABI_VERSION}"
    restarter = next(c for c in doctor["checks"] if c["name"] == "restarter")
    assert restarter["ok"], restarter
    if os.path.exists(kernel.INSTALLED_RESTARTER):       # what the guest restarts with
        assert restarter["detail"] == f"{kernel.INSTALLED_RESTARTER} (installed)"


def test_guest_restarts_a_real_program_from_the_command_line(guest):
    assert guest["checkpoint"]["rc"] == 0, guest["checkpoint"]
    restart = guest["restart"]
    assert restart["rc"] == 0, restart
    assert re.fullmatch(r"crfs restart: \S+: restored pid \d+\n", restart["stderr"])
    assert guest["restored_counts"] is True
    half = guest["restart_half"]
    assert half["rc"] == 1 and "not restarted: unsound image: records: " in half["stderr"]


def test_guest_mount_restarts_with_the_installed_restarter(guest):
    """mount -t fuse crfs, cp to restart/: the daemon finds the installed restarter (the
    source tree's was removed in the guest)."""
    if not os.path.exists(kernel.INSTALLED_RESTARTER):
        pytest.skip(f"{kernel.INSTALLED_RESTARTER} not installed (bash kmod/install)")
    through = guest["mount_restart"]
    assert through["mount"]["rc"] == 0, through
    assert through["cp"]["rc"] == 0, through
    assert "state: running" in through["status"] and through["counts"] is True, through
