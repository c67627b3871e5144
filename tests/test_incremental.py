"""Incremental checkpoints (crfs checkpoint --track / --parent) of a real process.

tests/c/ckpt_pages.c writes the pages the test names; each checkpoint leaves it stopped, so
the truth is read from /proc/<pid>/mem at that very point and compared with the mounted
image's tasks/<pid>/mem, whose pages come from the whole chain.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from crfs.checkpoint import CheckpointError, checkpoint, tracking
from crfs.errors import FormatError
from crfs.formats.source import Source
from crfs.model import registry
from crfs.model.chain import ChainError
from crfs.model.verify import verify
from mountfs import Mount, errors_in_log

PAGE = 4096
PAGES = 64
RSEQ_CPU_FIELDS = 32     # struct rseq: cpu_id_start, cpu_id, rseq_cs, flags, node_id, mm_cid

pytestmark = pytest.mark.skipif(tracking.method() is None,
                                reason="this kernel tracks no written pages")


class Pages:
    """tests/c/ckpt_pages.c, driven line by line."""

    def __init__(self, exe):
        self.proc = subprocess.Popen([str(exe), str(PAGES)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        ready = dict(item.split("=") for item in self.proc.stdout.readline().split()[1:])
        self.area = int(ready["area"], 16)
        self.rseq = int(ready["rseq"], 16)

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer.startswith("ok"), answer
        return answer.split()[1:]

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def wait_stopped(pid):
    deadline = time.time() + 5
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
        assert time.time() < deadline, "not stopped"
        time.sleep(0.01)


def anon_truth(pid):
    """{(start, end): bytes} of the readable private anonymous VMAs, from /proc."""
    out = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ""
            if fields[1][0] != "r" or fields[1][3] != "p" or name not in ("", "[heap]",
                                                                           "[stack]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mem.seek(start)
            out[(start, end)] = mem.read(end - start)
    return out


def stopped(program, path, **options):
    """Checkpoint leaving the process stopped; the truth while it is; then it goes on.
    The cpu fields of the thread's struct rseq are left out of the truth: the kernel
    rewrites them whenever the thread returns to user space, as it does for crfs's
    injected syscalls after a snapshot (the waitid that reaps the clone)."""
    report = {}
    checkpoint(program.pid, path, after="stop", report=report, **options)
    wait_stopped(program.pid)
    truth = anon_truth(program.pid)
    if program.rseq:
        for (start, end), data in truth.items():
            if start <= program.rseq < end:
                at = program.rseq - start
                image = registry.open_image(path)
                try:
                    kept = image.tasks[0].mm.read(program.rseq, RSEQ_CPU_FIELDS)
                finally:
                    image.close()
                truth[(start, end)] = data[:at] + kept + data[at + RSEQ_CPU_FIELDS:]
    os.kill(program.pid, signal.SIGCONT)
    return truth, report


def assert_mounted_memory(mount, name, pid, truth):
    with open(mount.path / name / "tasks" / str(pid) / "mem", "rb") as mem:
        for (start, end), data in truth.items():
            mem.seek(start)
            assert mem.read(end - start) == data, f"{name}: VMA {start:#x}-{end:#x}"


@pytest.fixture
def env(monkeypatch, tmp_path, build_c):
    monkeypatch.setenv("CRFS_STATE_DIR", str(tmp_path / "state"))
    mount = Mount(tmp_path)
    program = Pages(build_c("ckpt_pages", 64))
    try:
        yield mount, program
    finally:
        program.kill()
        mount.unmount()


def test_chain_of_three_images_shows_memory_at_each_point(env):
    mount, program = env
    store = mount.store
    truths = [stopped(program, store / "a.ckpt", track=True)[0]]
    program.command("w 3 170")
    program.command("w 10 187")
    program.command("d 20")                       # dropped: zeros, not the parent's page
    truth, report = stopped(program, store / "b.ckpt", parent=store / "a.ckpt")
    truths.append(truth)
    assert report["parent"] == str(store / "a.ckpt") and report["parent_pages"] > 0
    program.command("w 3 1")
    new = int(program.command("m")[0], 16)        # a mapping made since: all in the child
    truth, report = stopped(program, store / "c.ckpt", parent=store / "b.ckpt")
    truths.append(truth)
    assert any(start <= new < end for start, end in truth)
    full = os.path.getsize(store / "a.ckpt")
    assert os.path.getsize(store / "b.ckpt") < full // 2
    assert os.path.getsize(store / "c.ckpt") < full // 2
    c = registry.open_image(store / "c.ckpt")
    assert c.chain == [("b.ckpt", report["tracking"]), ("a.ckpt", report["tracking"])]
    assert c.tasks[0].mm.read(program.area + 20 * PAGE, PAGE) == bytes(PAGE)
    c.close()
    mount.mount()
    for name, truth in zip(("a.ckpt", "b.ckpt", "c.ckpt"), truths):
        assert_mounted_memory(mount, name, program.pid, truth)
    task = mount.path / "c.ckpt" / "tasks" / str(program.pid)
    area = next(data for (start, end), data in truths[2].items()
                if start <= program.area < end)
    start = next(start for (start, end) in truths[2] if start <= program.area < end)
    for index in (3, 4, 10, 30):                  # written in c, in b, in b, only in a
        address = program.area + index * PAGE
        page = (task / "pages" / f"{address:08x}").read_bytes()
        assert page == area[address - start:address - start + PAGE], index
    vmas = task / "mm" / "vmas"
    for vma in os.listdir(vmas):
        first = int(vma.split("-")[0], 16)
        if first == start:
            assert (vmas / vma / "data").read_bytes() == area
    assert "chain: incremental: parents b.ckpt" in (mount.path / "c.ckpt" / "verify").read_text()
    assert not errors_in_log(mount.log_text())


def test_changed_or_missing_parent_is_refused_by_name(env):
    mount, program = env
    store = mount.store
    stopped(program, store / "a.ckpt", track=True)
    program.command("w 5 9")
    stopped(program, store / "b.ckpt", parent=store / "a.ckpt")
    shutil.copy(store / "a.ckpt", store / "a.orig")
    data = bytearray((store / "a.ckpt").read_bytes())
    data[-100] ^= 0xFF                             # same size, other bytes
    (store / "a.ckpt").write_bytes(bytes(data))
    with pytest.raises(ChainError, match="its parent a.ckpt changed"):
        registry.open_image(store / "b.ckpt")
    with Source.open(store / "b.ckpt") as source:
        text = verify(source).text("b.ckpt")
    assert "FAIL  chain: incremental image: its parent a.ckpt changed" in text
    (store / "a.ckpt").unlink()
    with pytest.raises(ChainError, match="its parent a.ckpt is missing"):
        registry.open_image(store / "b.ckpt")
    mount.mount()
    listing = os.listdir(mount.path)
    assert "a.orig" in listing and "b.ckpt" in listing
    assert "parent a.ckpt is missing" in (mount.path / "b.ckpt" / "error").read_text()
    assert (mount.path / "a.orig" / "tasks").is_dir()   # only the child is broken


def test_parent_that_did_not_start_tracking_gives_a_full_image(env):
    mount, program = env
    store = mount.store
    stopped(program, store / "a.ckpt", track=True)
    stopped(program, store / "b.ckpt", track=True)    # tracking restarts here
    truth, report = stopped(program, store / "c.ckpt", parent=store / "a.ckpt")
    assert report["parent"] is None and "no page tracking since a.ckpt" in report["note"]
    image = registry.open_image(store / "c.ckpt")
    assert image.parent is None
    image.close()
    program.command("w 7 7")
    _, report = stopped(program, store / "d.ckpt", parent=store / "c.ckpt")
    assert report["parent"] == str(store / "c.ckpt")


def test_no_tracking_kernel_refuses_before_stopping(env, monkeypatch):
    mount, program = env
    monkeypatch.setenv("CRFS_TRACKING", "none")
    with pytest.raises(CheckpointError, match="cannot track written pages"):
        checkpoint(program.pid, mount.store / "a.ckpt", track=True)
    assert not os.listdir(mount.store)
    program.command("w 1 1")                       # it runs on, untouched


def test_parent_elsewhere_is_refused(env, tmp_path):
    mount, program = env
    stopped(program, mount.store / "a.ckpt", track=True)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(CheckpointError, match="in its parent's directory"):
        checkpoint(program.pid, other / "b.ckpt", parent=mount.store / "a.ckpt")


@pytest.mark.parametrize("bits", [32, 64])
def test_parent_records_match_the_c_structs(build_c, bits):
    """tests/c/ckpt_chain_golden.c writes both records from C structs (gcc -m32/-m64)."""
    from crfs.formats import ckpt as fmt
    golden = subprocess.run([str(build_c("ckpt_chain_golden", bits))], check=True,
                            capture_output=True).stdout
    parent = fmt.crfs_hdr_parent.build({"h": {"type": 8011, "len": 56}, "size": 12345,
                                        "sha256": bytes(range(32)), "tracking": 2})
    pages = fmt.crfs_hdr_parent_pages.build({"h": {"type": 8012, "len": 48}, "nr_runs": 2,
                                             "runs": [{"start": 4096, "npages": 3},
                                                      {"start": 65536, "npages": 1}]})
    assert golden == parent + pages
    for struct_, raw in ((fmt.crfs_hdr_parent, parent), (fmt.crfs_hdr_parent_pages, pages)):
        assert struct_.build(struct_.parse(raw)) == raw
    assert issubclass(ChainError, FormatError)


def test_flatten_writes_the_chain_as_one_complete_image(env):
    """What the restart path hands the kernel: one image, no parent, the same memory."""
    from crfs.model import chain
    mount, program = env
    store = mount.store
    stopped(program, store / "a.ckpt", track=True)
    program.command("w 2 77")
    stopped(program, store / "b.ckpt", parent=store / "a.ckpt")
    child = registry.open_image(store / "b.ckpt")
    try:
        flat = chain.flatten(child, store, lambda img, out: registry.dump(img, out, "ckpt"))
        whole = registry.open_image(flat)
        try:
            assert whole.parent is None and whole.chain is None
            assert all(not mm.parent_runs for mm in whole.mms())
            for vma in child.tasks[0].mm.vmas:
                assert whole.tasks[0].mm.read(vma.start, vma.size) == \
                    child.tasks[0].mm.read(vma.start, vma.size)
        finally:
            whole.close()
        with Source.open(flat) as source:
            assert verify(source).sound
        assert child.parent is not None            # the child's model is left as it was
    finally:
        child.close()
    os.unlink(flat)
