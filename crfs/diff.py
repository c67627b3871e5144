"""`crfs diff A B`: what changed between two images of the same program.

Works on the model (crfs.model) of both images, never on whole images in memory: pages are
compared one page at a time, each read with pread from its image (a page dumped in only one
image is "added" or "dropped"; the other one reads as zeros there). The result is a plain
dict with the keys documented in docs/json.md (`crfs diff --json` prints it); text() turns
it into the lines `crfs diff` prints. Addresses and register values are "0x…" strings.
"""

from dataclasses import fields

from crfs import jsonout, render
from crfs.formats.x86 import PAGE_SIZE
from crfs.model.image import Creds

TASK_FIELDS = ("comm", "tgid", "ppid", "pgid", "sid", "state")


def hexa(value):
    return None if value is None else f"{value:#x}"


# ---------------------------------------------------------------------------- tasks

def _changes(pairs):
    """{key: {"a": x, "b": y}} of the (key, x, y) whose values differ."""
    return {key: {"a": a, "b": b} for key, a, b in pairs if a != b}


def _registers(ta, tb):
    ra = ta.regs.as_dict() if ta.regs is not None else {}
    rb = tb.regs.as_dict() if tb.regs is not None else {}
    return _changes((name, hexa(ra.get(name)), hexa(rb.get(name)))
                    for name in dict.fromkeys([*ra, *rb]))


def _creds(ta, tb):
    ca, cb = ta.creds or Creds(), tb.creds or Creds()
    return _changes((f.name, getattr(ca, f.name), getattr(cb, f.name))
                    for f in fields(Creds))


def _fs(ta, tb):
    def parts(task):
        fs = task.fs
        return (None, None, None) if fs is None else (fs.cwd, fs.root, fs.umask)
    return _changes(zip(("cwd", "root", "umask"), parts(ta), parts(tb)))


def _fd_text(desc):
    cloexec = " cloexec" if desc.cloexec else ""
    file = desc.file
    return f"{file.link()} flags {file.flags:#o} pos {file.pos}{cloexec}"


def _files(ta, tb):
    """Changed descriptors, by "fd N": what /proc/PID/fd/N showed, flags, position,
    close-on-exec; None where the fd was not open."""
    def table(task):
        return {} if task.files is None else {d.fd: _fd_text(d) for d in task.files.fds}
    fa, fb = table(ta), table(tb)
    return _changes((f"fd {n}", fa.get(n), fb.get(n)) for n in sorted({*fa, *fb}))


def _signals(ta, tb):
    """Changed blocked/pending masks, altstack and handlers (by signal name)."""
    sa, sb = ta.signals, tb.signals
    if sa is None or sb is None:
        return {} if sa is sb else {"stored": {"a": sa is not None, "b": sb is not None}}
    out = _changes((("blocked", hexa(sa.blocked), hexa(sb.blocked)),
                    ("pending", hexa(sa.pending.mask), hexa(sb.pending.mask))))
    shared = [hexa(s.group.shared_pending.mask) if s.group else None for s in (sa, sb)]
    out.update(_changes([("shared_pending", *shared)]))
    alt = [None if s.altstack is None else
           f"{s.altstack.sp:#x}+{s.altstack.size:#x} flags {s.altstack.flags:#x}"
           for s in (sa, sb)]
    out.update(_changes([("altstack", *alt)]))
    handlers = _handlers(sa.handlers, sb.handlers)
    if handlers:
        out["handlers"] = handlers
    return out


def _action_text(action):
    handler = {0: "SIG_DFL", 1: "SIG_IGN"}.get(action.handler, f"{action.handler:#x}")
    return f"{handler} flags {action.flags:#x} mask {action.mask:#x}"


def _handlers(ha, hb):
    if ha is None or hb is None:
        return {}
    return _changes((render.signal_name(n), _action_text(a), _action_text(b))
                    for n, (a, b) in enumerate(zip(ha.actions, hb.actions), start=1))


def _task_changes(ta, tb):
    change = {"pid": ta.pid}
    parts = {
        "fields": _changes((name, getattr(ta, name), getattr(tb, name))
                           for name in TASK_FIELDS),
        "registers": _registers(ta, tb),
        "fpu": {"changed": True} if ta.fpu != tb.fpu else {},
        "creds": _creds(ta, tb),
        "signals": _signals(ta, tb),
        "fs": _fs(ta, tb),
        "files": _files(ta, tb),
    }
    change.update({key: value for key, value in parts.items() if value})
    return change if len(change) > 1 else None


def _task_line(task):
    return {"pid": task.pid, "tgid": task.tgid, "comm": jsonout.name(task.comm)}


# ---------------------------------------------------------------------------- VMAs

def _vma_entry(vma, mm, arch):
    return {"start": hexa(vma.start), "end": hexa(vma.end), "perms": render.perms(vma),
            "name": jsonout.name(render.vma_name(vma, mm)), "kind": vma.kind, "pages": len(vma.pages)}


def _match_vmas(ma, mb):
    """(pairs, only_a, only_b): VMAs matched by start, then the rest by end (a stack grows
    down), then by overlap with the same file name."""
    rest_a, rest_b = list(ma.vmas), list(mb.vmas)
    pairs = []
    for key in (lambda v: v.start, lambda v: v.end):
        by_key = {key(v): v for v in rest_b}
        for va in list(rest_a):
            vb = by_key.pop(key(va), None)
            if vb is not None and vb in rest_b:
                pairs.append((va, vb))
                rest_a.remove(va)
                rest_b.remove(vb)
    for va in list(rest_a):
        for vb in rest_b:
            if va.start < vb.end and vb.start < va.end and va.file == vb.file:
                pairs.append((va, vb))
                rest_a.remove(va)
                rest_b.remove(vb)
                break
    return pairs, rest_a, rest_b


def _vma_changes(ma, mb, arch, pairs, gone, added):
    out = {"added": [_vma_entry(v, mb, arch) for v in sorted(added, key=lambda v: v.start)],
           "removed": [_vma_entry(v, ma, arch) for v in sorted(gone, key=lambda v: v.start)],
           "resized": [], "changed": []}
    for va, vb in sorted(pairs, key=lambda p: p[0].start):
        if (va.start, va.end) != (vb.start, vb.end):
            out["resized"].append({"a": _vma_entry(va, ma, arch), "b": _vma_entry(vb, mb, arch)})
        attrs = _changes((("perms", render.perms(va), render.perms(vb)),
                          ("vm_flags", hexa(va.vm_flags), hexa(vb.vm_flags)),
                          ("kind", va.kind, vb.kind), ("file", va.file, vb.file),
                          ("pgoff", va.pgoff, vb.pgoff)))
        if attrs:
            out["changed"].append({"start": hexa(vb.start), "end": hexa(vb.end), **attrs})
    return out


# ---------------------------------------------------------------------------- pages

def _pages(mm):
    """(address, file offset) of every dumped page of `mm`, ascending."""
    for vma in mm.vmas:
        yield from vma.pages.within(vma.start, vma.end)


def _merged(ma, mb):
    """(address, offset in A or None, offset in B or None) over both page sets, ascending."""
    ia, ib = _pages(ma), _pages(mb)
    a, b = next(ia, None), next(ib, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            yield a[0], a[1], None
            a = next(ia, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(ib, None)
        else:
            yield a[0], a[1], b[1]
            a, b = next(ia, None), next(ib, None)


ZERO_PAGE = bytes(PAGE_SIZE)


BATCH = 64     # pages compared with one pread per image (256 KiB each at most)


class _PageTally:
    """Totals and ranges of consecutive differing pages, fed in ascending address order."""

    def __init__(self):
        self.totals = {"changed": 0, "added": 0, "dropped": 0, "same": 0}
        self.ranges = []

    def add(self, addr, kinds):
        if not kinds:
            self.totals["same"] += 1
            return
        last = self.ranges[-1] if self.ranges else None
        if last is None or last["_end"] != addr:
            last = {"_end": addr, "start": hexa(addr), "changed": 0, "added": 0, "dropped": 0}
            self.ranges.append(last)
        for kind in kinds:
            self.totals[kind] += 1
            last[kind] += 1
        last["_end"] = addr + PAGE_SIZE

    def result(self):
        ranges = [{"start": r["start"], "end": hexa(r["_end"]), "changed": r["changed"],
                   "added": r["added"], "dropped": r["dropped"]} for r in self.ranges]
        return {**self.totals, "ranges": ranges}


def _compare_batch(ma, mb, batch, tally):
    """Pages dumped in both images, consecutive in memory and in each file: one pread per
    image; page by page only when the two differ."""
    addr, offset_a, offset_b = batch[0]
    size = len(batch) * PAGE_SIZE
    data_a, data_b = ma.source.pread(offset_a, size), mb.source.pread(offset_b, size)
    same = data_a == data_b
    for i, (page, _, _) in enumerate(batch):
        lo, hi = i * PAGE_SIZE, (i + 1) * PAGE_SIZE
        tally.add(page, () if same or data_a[lo:hi] == data_b[lo:hi] else ("changed",))


def _continues(batch, addr, offset_a, offset_b):
    last_addr, last_a, last_b = batch[-1]
    return (len(batch) < BATCH and addr == last_addr + PAGE_SIZE
            and offset_a == last_a + PAGE_SIZE and offset_b == last_b + PAGE_SIZE)


def _page_changes(ma, mb, pairs, progress):
    """Changed pages as ranges of consecutive changed pages, with counts per kind.
    Pages compare only inside a pair of matched VMAs; a page of a VMA that is new (or
    gone) is added (or dropped) whatever the other image has at that address.
    progress.step() is told the pages read as it goes."""
    matched = {id(va): vb for va, vb in pairs}

    def same_vma(addr):
        va = ma.vma_at(addr)
        return va is not None and matched.get(id(va)) is mb.vma_at(addr)

    tally, batch = _PageTally(), []
    for addr, offset_a, offset_b in _merged(ma, mb):
        progress.step((offset_a is not None) + (offset_b is not None))
        both = offset_a is not None and offset_b is not None and same_vma(addr)
        if batch and not (both and _continues(batch, addr, offset_a, offset_b)):
            _compare_batch(ma, mb, batch, tally)
            batch = []
        if both:
            batch.append((addr, offset_a, offset_b))
        elif offset_a is not None and offset_b is not None:
            tally.add(addr, ("dropped", "added"))
        else:
            tally.add(addr, ("added",) if offset_a is None else ("dropped",))
    if batch:
        _compare_batch(ma, mb, batch, tally)
    return tally.result()


# ---------------------------------------------------------------------------- images

def _leaders(image):
    """{tgid: mm} of each process with an address space (its leader's, else any thread's)."""
    out = {}
    for task in image.tasks:
        if task.mm is not None and (task.tgid not in out or task.pid == task.tgid):
            out[task.tgid] = task.mm
    return out


class _Progress:
    """Counts pages read and reports them in bytes to `report(done, total)`, every
    REPORT_EVERY pages and at the end."""

    REPORT_EVERY = 256

    def __init__(self, report, total_pages):
        self.report, self.total, self.done = report, total_pages * PAGE_SIZE, 0

    def step(self, pages):
        self.done += pages * PAGE_SIZE
        if self.report and self.done % (self.REPORT_EVERY * PAGE_SIZE) < pages * PAGE_SIZE:
            self.report(self.done, self.total)

    def end(self):
        if self.report:
            self.report(self.done, self.total)


def diff(a, b, name_a="a", name_b="b", progress=None):
    """The differences between Images `a` and `b`, as a dict (docs/json.md); `progress`
    (done, total): called now and then with the bytes of pages compared so far."""
    pids_a = {t.pid: t for t in a.tasks}
    pids_b = {t.pid: t for t in b.tasks}
    tasks = {"added": [_task_line(pids_b[p]) for p in sorted(set(pids_b) - set(pids_a))],
             "gone": [_task_line(pids_a[p]) for p in sorted(set(pids_a) - set(pids_b))],
             "changed": []}
    for pid in sorted(set(pids_a) & set(pids_b)):
        change = _task_changes(pids_a[pid], pids_b[pid])
        if change:
            tasks["changed"].append(change)
    mms_a, mms_b = _leaders(a), _leaders(b)
    common = set(mms_a) & set(mms_b)
    counter = _Progress(progress, sum(mms_a[t].page_count() + mms_b[t].page_count()
                                      for t in common))
    mms = []
    for tgid in sorted(common):
        ma, mb = mms_a[tgid], mms_b[tgid]
        pairs, gone, added = _match_vmas(ma, mb)
        vmas = _vma_changes(ma, mb, b.arch, pairs, gone, added)
        pages = _page_changes(ma, mb, pairs, counter)
        mms.append({"tgid": tgid, "vmas": vmas, "pages": pages})
    counter.end()
    result = {"a": name_a, "b": name_b,
              "format": _changes([("description", a.description, b.description)]),
              "tasks": tasks, "mms": mms}
    result["equal"] = not _differs(result)
    return result


def _differs(result):
    if result["format"] or any(result["tasks"].values()):
        return True
    for mm in result["mms"]:
        if any(mm["vmas"].values()) or mm["pages"]["ranges"]:
            return True
    return False


# ---------------------------------------------------------------------------- text

def _pair(change, absent="None"):
    a, b = (absent if v is None else v for v in (change["a"], change["b"]))
    return f"{a} -> {b}"


def _vma_text(entry):
    name = f" {entry['name']}" if entry["name"] else ""
    return f"{entry['start']}-{entry['end']} {entry['perms']}{name} ({entry['pages']} pages)"


def _task_text(change):
    pid = change["pid"]
    lines = []
    for part in ("fields", "registers", "creds", "fs", "files"):
        for key, value in change.get(part, {}).items():
            label = "" if part in ("fields", "registers", "files") else f"{part} "
            absent = "(not open)" if part == "files" else "None"
            lines.append(f"task {pid}: {label}{key} {_pair(value, absent)}")
    if "fpu" in change:
        lines.append(f"task {pid}: fpu state changed")
    signals = change.get("signals", {})
    for key, value in signals.items():
        if key == "handlers":
            lines += [f"task {pid}: handler of {sig} {_pair(v)}" for sig, v in value.items()]
        else:
            lines.append(f"task {pid}: signals {key} {_pair(value)}")
    return lines


def text(result):
    """The lines `crfs diff` prints, "" when the images are equal."""
    lines = [f"--- {result['a']}", f"+++ {result['b']}"]
    if result["format"]:
        lines.append(f"format: {_pair(result['format']['description'])}")
    tasks = result["tasks"]
    lines += [f"task {t['pid']} added (tgid {t['tgid']}, comm {render.quoted(t['comm'])})"
              for t in tasks["added"]]
    lines += [f"task {t['pid']} gone (tgid {t['tgid']}, comm {render.quoted(t['comm'])})"
              for t in tasks["gone"]]
    for change in tasks["changed"]:
        lines += _task_text(change)
    for mm in result["mms"]:
        lines += _mm_text(mm)
    return "\n".join(lines) + "\n" if result["equal"] is False else ""


def _mm_text(mm):
    who = f"mm of {mm['tgid']}"
    vmas, pages = mm["vmas"], mm["pages"]
    lines = [f"{who}: VMA {_vma_text(v)} added" for v in vmas["added"]]
    lines += [f"{who}: VMA {_vma_text(v)} removed" for v in vmas["removed"]]
    lines += [f"{who}: VMA {r['a']['start']}-{r['a']['end']} resized to "
              f"{r['b']['start']}-{r['b']['end']}" for r in vmas["resized"]]
    for c in vmas["changed"]:
        what = ", ".join(f"{k} {_pair(v)}" for k, v in c.items() if k not in ("start", "end"))
        lines.append(f"{who}: VMA {c['start']}-{c['end']}: {what}")
    for r in pages["ranges"]:
        counts = ", ".join(f"{r[k]} {k}" for k in ("changed", "added", "dropped") if r[k])
        lines.append(f"{who}: pages {r['start']}-{r['end']}: {counts}")
    if pages["ranges"]:
        lines.append(f"{who}: {pages['changed']} pages changed, {pages['added']} added, "
                     f"{pages['dropped']} dropped, {pages['same']} the same")
    return lines
