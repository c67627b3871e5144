"""A real `criu dump`, converted by `crfs convert` and restarted by crfs.ko, in the kmod
qemu guest (criu cannot dump on every host kernel; crfs.ko is never loaded on the host).

Part "criu" of the session's one guest boot (tests/guest_parts.py): tests/criu_guest_checks.py
runs there and reports in JSON; the tests read the report. Skipped without qemu, Debian's
kernel or criu (fails in CI)."""

import pytest

import guest_parts


@pytest.fixture(scope="module")
def report(guest_boot):
    """This module's part of the session's one guest boot (guest_parts.prepare_criu)."""
    part = guest_parts.result(guest_boot, "criu")
    assert part["report"] is not None, f"guest status {part['rc']}:\n" \
        f"{part['stdout'][-3000:]}\n{part['stderr'][-3000:]}"
    return {**part["report"], "guest_rc": part["rc"]}


def test_guest_run_is_clean(report):
    assert report["guest_rc"] == 0, report
    assert report["insmod"] == 0 and report["criu_check"] == 0


def test_criu_dumps_and_crfs_reads_the_dump(report):
    assert report["dump"]["rc"] == 0, report["dump"]
    assert report["info"]["rc"] == 0, report["info"]
    assert "format: criu v1.1 x86_64" in report["info"]["stdout"]
    assert f"pid {report['pid']} tgid {report['pid']}" in report["info"]["stdout"]


def test_converted_dump_restarts_and_goes_on(report):
    assert report["convert"]["rc"] == 0, report["convert"]
    assert report["verify"]["rc"] == 0, report["verify"]
    assert report["restart"]["errno"] == 0, report["restart"]
    last = int(report["before"][-1][1])
    after = report["after"]
    assert after, report
    # The next tick after the dump's last one, by the same pid, with every heap page
    # re-read and right; then more ticks.
    assert [int(t[1]) for t in after[:5]] == list(range(last + 1, last + 6)), after
    assert all(t[2] == f"pid={report['pid']}" and t[3] == "heap=ok" for t in after), after
    # Into its own stdout: the file criu saw open, reopened from the converted fd table.
    assert report["stdout_link"] == "/tmp/criu-guest/out", report


@pytest.fixture(scope="module")
def ns(report):
    """A fresh criu dump of tests/data/criu/ns_prog.c in the guest, read by crfs, with /proc
    read just before the dump (criu_guest_checks.ns_check)."""
    found = report.get("ns")
    assert found is not None, report.keys()
    assert found["dump"]["rc"] == 0, found["dump"]
    return found


def test_fresh_dump_namespaces_and_cgroup(ns):
    truth, shown = ns["truth"], ns["crfs"]
    assert "cgroup.img" in ns["files"]
    assert all(any(n.startswith(p) for n in ns["files"]) for p in ("ipcns-shm-", "utsns-"))
    # cgroup v2's line as /proc's; a v1 hierarchy's with "?" for its id (criu keeps none)
    assert ns["cgroup_v1_mount"] == 0
    proc = truth["cgroup"].splitlines()
    assert sorted(proc) == sorted(["0::/crfs-ns", proc[0]]) and \
        proc[0].split(":", 1)[1] == "name=crfsv1:/grp", proc
    assert sorted(shown["cgroup"].splitlines()) == ["0::/crfs-ns", "?:name=crfsv1:/grp"]
    own = {n for n in shown["ns"] if truth["ns"][n] != truth["self_ns"][n]}
    assert own == {"ipc", "uts"}
    lines = {line.split()[0]: line for line in shown["namespaces"].splitlines()}
    assert {n for n, line in lines.items() if " dumped: " in line} == own
    assert "nodename crfs-ns" in lines["uts"]
    assert shown["fd"] == truth["fd"]


def test_fresh_dump_sysv_shm_and_inet(ns):
    from test_criu_ns import net_rows, proc_net_rows, shm_rows
    truth, shown = ns["truth"], ns["crfs"]
    ours, proc = shm_rows(shown["sysvipc"]), shm_rows(truth["sysvipc"])
    assert sorted(ours) == sorted(proc) and len(ours) == 2
    assert all(row == {k: proc[shmid][k] for k in row} for shmid, row in ours.items())
    segments = sorted(shown["segments"].values())
    assert segments == [[100, "unattached segment", "", ""],
                        [12288, "crfs-sysv-shm page 0", "", "crfs-sysv-shm page 2"]]
    for name in ("tcp", "udp", "tcp6"):
        rows = net_rows(shown[f"net-{name}"])
        assert len(rows) == 1, shown[f"net-{name}"]
        assert rows == {ino: r for ino, r in proc_net_rows(truth[f"net-{name}"]).items()
                        if ino in rows}
    assert ns["convert"]["rc"] != 0
    assert "SysV shm segment" in ns["convert"]["stderr"], ns["convert"]
    assert "crfs.ko does not restore SysV shared memory" in ns["convert"]["stderr"]


def test_sysv_segment_of_criu_own_ipc_namespace(ns):
    """ns_prog host-ipc: its segment lives in the IPC namespace criu runs in, which criu
    does not dump: criu refuses the dump, so a dump's SysV mapping always comes with its
    segment in ipcns-shm-ID.img (crfs's "/SYSV (shmid N)" for one without is for a
    malformed dump)."""
    found = ns["host_ipc"]
    assert found["ready"] and found["maps"][0].rstrip().endswith("/SYSV00c0ffee (deleted)")
    assert found["dump"]["rc"] != 0, found
    assert any("with SysVIPC shmem map" in line and "doesn't live in IPC ns" in line
               for line in found["log"]), found["log"]
