"""`crfs diff` on two checkpoints of a real program (tests/c/diff_target.c) taken before
and after it changes known pages, VMAs and a register; exit status as diff(1)."""

import json
import os
import re
import select
import signal
import subprocess

import pytest

from mountfs import CRFS
from test_checkpoint import Program
from test_json import check

PAGE = 4096


def crfs(*args):
    return subprocess.run(CRFS + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120)


def read_line(program, prefix):
    fd, text = program.proc.stdout.fileno(), ""
    while not text.endswith("\n"):
        assert select.select([fd], [], [], 10)[0], f"no {prefix} line: {text!r}"
        chunk = os.read(fd, 4096).decode()
        assert chunk, text
        text += chunk
    assert text.startswith(prefix), text
    return dict(item.split("=", 1) for item in text.split()[1:])


@pytest.fixture(scope="module")
def two_checkpoints(build_c, tmp_path_factory):
    """(before, after, ready values, fresh region address) of diff_target."""
    tmp = tmp_path_factory.mktemp("diff")
    with Program(build_c("diff_target", 64)) as program:
        before, after = tmp / "before.ckpt", tmp / "after.ckpt"
        result = crfs("checkpoint", program.pid, "-o", before, "--via", "ptrace")
        assert result.returncode == 0, result.stderr
        os.kill(program.pid, signal.SIGUSR1)
        fresh = int(read_line(program, "changed")["fresh"], 16)
        result = crfs("checkpoint", program.pid, "-o", after, "--via", "ptrace")
        assert result.returncode == 0, result.stderr
        return before, after, program.ready, fresh


def test_same_image_is_equal(two_checkpoints):
    before = two_checkpoints[0]
    result = crfs("diff", before, before)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = crfs("diff", "--json", before, before)
    assert result.returncode == 0 and json.loads(result.stdout)["equal"] is True


def counts_over(ranges, lo, hi):
    """The counts of the one range holding [lo, hi)."""
    (counts,) = [c for (start, end), c in ranges.items() if start <= lo and hi <= end]
    return counts


def test_text_names_what_the_program_changed(two_checkpoints):
    before, after, ready, fresh = two_checkpoints
    result = crfs("diff", before, after)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    pid = re.search(r"task (\d+): r15 0x1111 -> 0x2222", out)
    assert pid, out
    who = f"mm of {pid.group(1)}"
    region, shrink = ready["region"], ready["shrink"]
    assert f"{who}: pages {region + 4 * PAGE:#x}-{region + 7 * PAGE:#x}: 3 changed\n" in out
    assert f"{who}: VMA {shrink:#x}-{shrink + 8 * PAGE:#x} resized to " \
           f"{shrink:#x}-{shrink + 4 * PAGE:#x}\n" in out
    assert f"{who}: VMA {fresh:#x}-{fresh + 3 * PAGE:#x} r-xp (3 pages) added\n" in out
    ranges = {(int(lo, 16), int(hi, 16)): counts for lo, hi, counts in
              re.findall(rf"{who}: pages (0x[0-9a-f]+)-(0x[0-9a-f]+): (.*)\n", out)}
    # the new VMA's pages are added, the unmapped ones dropped (the new VMA may reuse
    # their addresses: still added and dropped, not "changed")
    assert "3 added" in counts_over(ranges, fresh, fresh + 3 * PAGE)
    assert "4 dropped" in counts_over(ranges, shrink + 4 * PAGE, shrink + 8 * PAGE)
    assert sum(int(n) for c in ranges.values() for n in re.findall(r"(\d+) added", c)) == 3
    # page 15 was written with the bytes it had: not a change
    assert f"{region + 15 * PAGE:#x}-" not in out
    assert out.startswith(f"--- {before}\n+++ {after}\n")


def test_json_counts(two_checkpoints):
    before, after, ready, fresh = two_checkpoints
    result = crfs("diff", "--json", before, after)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    printed = check("diff", doc)[0]      # every key documented, of its type
    assert {"tasks.changed[].registers.*", "mms[].vmas.resized[].a",
            "mms[].pages.ranges[].dropped"} <= printed
    assert doc["equal"] is False and doc["tasks"]["added"] == doc["tasks"]["gone"] == []
    (task,) = doc["tasks"]["changed"]
    assert task["registers"]["r15"] == {"a": "0x1111", "b": "0x2222"}
    (mm,) = doc["mms"]
    region = ready["region"]
    ranges = {r["start"]: r for r in mm["pages"]["ranges"]}
    assert ranges[f"{region + 4 * PAGE:#x}"] == {
        "start": f"{region + 4 * PAGE:#x}", "end": f"{region + 7 * PAGE:#x}",
        "changed": 3, "added": 0, "dropped": 0}
    assert [v["start"] for v in mm["vmas"]["added"]] == [f"{fresh:#x}"]
    assert mm["vmas"]["removed"] == []
    assert (mm["pages"]["added"], mm["pages"]["dropped"]) == (3, 4)
    (resized,) = mm["vmas"]["resized"]
    assert resized["b"]["end"] == f"{ready['shrink'] + 4 * PAGE:#x}"


def test_errors_exit_2(two_checkpoints, tmp_path):
    before = two_checkpoints[0]
    missing = crfs("diff", before, tmp_path / "nothing")
    assert missing.returncode == 2 and "No such file" in missing.stderr
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not an image at all")
    result = crfs("diff", bad, before)
    assert result.returncode == 2 and str(bad) in result.stderr
    assert "Traceback" not in result.stderr + missing.stderr
    assert crfs("diff", before).returncode == 2      # usage


def test_tasks_creds_signals_fs_in_the_model():
    """The parts a real program's checkpoints keep equal: tasks added and gone, creds,
    signal handlers, fs (diff of two synthetic images, in the model)."""
    from crfs.diff import diff, text
    from crfs.model.image import FsStruct, SigAction, SigHand, Signals, Task
    from crfs.model.synth import synthetic_image
    a, b = synthetic_image(pid=7), synthetic_image(pid=7, heap_pages=66)
    for image in (a, b):
        image.tasks[0].signals = Signals(handlers=SigHand())
        image.tasks[0].fs = FsStruct(cwd="/", umask=0o22)
    a.tasks.append(Task(pid=8, tgid=7, ppid=1, comm="worker", mm=a.tasks[0].mm))
    b.tasks.append(Task(pid=9, tgid=7, ppid=1, comm="other", mm=b.tasks[0].mm))
    b.tasks[0].creds.euid = 0
    b.tasks[0].signals.handlers.actions[9] = SigAction(handler=0x401000)
    b.tasks[0].fs.cwd = "/tmp"
    result = diff(a, b)
    assert [t["pid"] for t in result["tasks"]["added"]] == [9]
    assert [t["pid"] for t in result["tasks"]["gone"]] == [8]
    (change,) = result["tasks"]["changed"]
    assert change["creds"] == {"euid": {"a": 1000, "b": 0}}
    assert change["signals"]["handlers"] == {
        "SIGUSR1": {"a": "SIG_DFL flags 0x0 mask 0x0", "b": "0x401000 flags 0x0 mask 0x0"}}
    assert change["fs"] == {"cwd": {"a": "/", "b": "/tmp"}}
    (mm,) = result["mms"]
    (resized,) = mm["vmas"]["resized"]
    assert mm["pages"]["added"] == 2
    lines = text(result)
    assert "task 9 added (tgid 7, comm 'other')\n" in lines
    assert "task 8 gone (tgid 7, comm 'worker')\n" in lines
    assert "task 7: creds euid 1000 -> 0\n" in lines
    assert "task 7: handler of SIGUSR1 SIG_DFL flags 0x0 mask 0x0 -> 0x401000" in lines


def test_files_in_the_model():
    """Descriptors opened, closed, moved or made close-on-exec between the two images."""
    from crfs.diff import diff, text
    from crfs.model.image import Fd, FdTable, OpenFile
    from crfs.model.synth import synthetic_image
    a, b = synthetic_image(pid=7), synthetic_image(pid=7)
    log = OpenFile(kind="file", path="/tmp/log", flags=0o2001, pos=10)
    a.tasks[0].files = FdTable([Fd(1, log), Fd(3, OpenFile(kind="pipe", pipe=5))])
    b.tasks[0].files = FdTable([Fd(1, OpenFile(kind="file", path="/tmp/log", flags=0o2001,
                                                pos=25), cloexec=True),
                                Fd(4, OpenFile(kind="file", path="/dev/null"))])
    (change,) = diff(a, b)["tasks"]["changed"]
    assert change["files"] == {
        "fd 1": {"a": "/tmp/log flags 0o2001 pos 10",
                 "b": "/tmp/log flags 0o2001 pos 25 cloexec"},
        "fd 3": {"a": "pipe:[5] flags 0o0 pos 0", "b": None},
        "fd 4": {"a": None, "b": "/dev/null flags 0o0 pos 0"}}
    assert "task 7: fd 3 pipe:[5] flags 0o0 pos 0 -> (not open)\n" in text(diff(a, b))


def test_progress_reaches_the_total():
    from crfs.diff import diff
    from crfs.model.synth import synthetic_image
    a, b = synthetic_image(pid=7, heap_pages=600), synthetic_image(pid=7, heap_pages=600)
    calls = []
    assert diff(a, b, progress=lambda done, total: calls.append((done, total)))["equal"]
    total = (a.tasks[0].mm.page_count() + b.tasks[0].mm.page_count()) * PAGE
    assert len(calls) > 2 and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_pages_compared_in_batches_report_single_pages():
    """Runs of pages are read BATCH at a time; a differing page inside a batch, or across
    two, is reported alone."""
    from crfs import diff as diff_module
    from crfs.model.synth import LAYOUT, PatternSource, synthetic_image

    class Changed(PatternSource):
        def page(self, index):
            data = super().page(index)
            return bytes(PAGE) if index in (71, 128, 129) else data

    a, b = synthetic_image(pid=7, heap_pages=200), synthetic_image(pid=7, heap_pages=200)
    mm = b.tasks[0].mm
    mm.source = Changed(mm.source.size // PAGE)
    heap = LAYOUT["x86_64"]["heap"]
    assert diff_module.BATCH == 64          # page 128-129 straddle the 2nd batch's end
    result = diff_module.diff(a, b)
    (mm_diff,) = result["mms"]
    assert [(r["start"], r["end"], r["changed"]) for r in mm_diff["pages"]["ranges"]] == [
        (f"{heap + 70 * PAGE:#x}", f"{heap + 71 * PAGE:#x}", 1),
        (f"{heap + 127 * PAGE:#x}", f"{heap + 129 * PAGE:#x}", 2)]
    assert mm_diff["pages"]["same"] == a.tasks[0].mm.page_count() - 3
