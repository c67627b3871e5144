"""Reading /proc/<pid>/...: maps, smaps flags, stat, status, auxv, pagemap, threads, children.

Everything read here is bounded: no file is read past a fixed size, so a hostile or huge
/proc entry cannot exhaust memory.
"""

import errno
import os
import re

from crfs.errors import CrfsError
from crfs.slots import SlotRecord

SMALL_FILE = 64 * 1024          # stat, status, comm, auxv
MAPS_LIMIT = 64 * 1024 * 1024   # maps and smaps of processes with very many VMAs
MAX_TASKS = 65536               # threads of one process, processes on the system
PAGEMAP_CHUNK = 32768           # pagemap entries per read (256 KiB)
# x86_64's, as crfs.formats.x86.PAGE_SIZE (not imported: the kernel path's start-up)
PAGE_SIZE = 4096


class FlagsChanged(CrfsError):
    """The VmFlags read before the freeze are not those of the snapshot (or of the stopped
    processes): take the checkpoint again (crfs.checkpoint.snapshot, api)."""


# Top byte of a pagemap entry (bits 56..63, see Documentation/admin-guide/mm/pagemap.rst).
PM_PRESENT = 0x80               # bit 63
PM_SWAPPED = 0x40               # bit 62
PM_FILE = 0x20                  # bit 61: file page or shared anonymous


def _table(wanted):
    """A bytes.translate table: top byte -> b"\\x01" if the page is wanted, else b"\\x00"."""
    return bytes(1 if wanted(top) else 0 for top in range(256))


# Anonymous memory: pages that exist (present or swapped). Never-touched pages are absent.
ANON_PAGES = _table(lambda top: top & (PM_PRESENT | PM_SWAPPED))
# Private file mappings: pages written since mapping (no longer the file's page cache page).
WRITTEN_FILE_PAGES = _table(lambda top: (top & PM_PRESENT and not top & PM_FILE)
                            or top & PM_SWAPPED)

# smaps VmFlags mnemonic -> VM_* bit. Only the bits with the same value since 2.6.x, which
# the image formats were designed with; the others describe today's kernel only.
VM_FLAG_BITS = {
    "rd": 0x1, "wr": 0x2, "ex": 0x4, "sh": 0x8, "mr": 0x10, "mw": 0x20, "me": 0x40,
    "ms": 0x80, "gd": 0x100, "pf": 0x400, "lo": 0x2000, "io": 0x4000, "sr": 0x8000,
    "rr": 0x10000, "dc": 0x20000, "de": 0x40000, "ac": 0x100000, "nr": 0x200000,
    "ht": 0x400000,
}


def read_text(path, limit=SMALL_FILE):
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", "surrogateescape")


def read_bytes(path, limit=SMALL_FILE):
    with open(path, "rb") as f:
        return f.read(limit)


class MapsLine(SlotRecord):
    """One VMA as /proc/<pid>/maps (and smaps) shows it (a SlotRecord: the kernel-module
    path of `crfs checkpoint` imports this module)."""

    __slots__ = ("start", "end", "perms", "offset", "dev", "inode", "name", "vm_flags",
                 "dontfork")
    _COMPARED = __slots__

    def __init__(self, start, end, perms, offset, dev, inode, name, vm_flags=0,
                 dontfork=False):
        self.start = start
        self.end = end
        self.perms = perms          # e.g. "rw-p"
        self.offset = offset        # bytes into the file
        self.dev = dev
        self.inode = inode
        self.name = name            # path, "[heap]", "" ...
        self.vm_flags = vm_flags
        # VmFlags "dc" / "wf" (MADV_DONTFORK / MADV_WIPEONFORK): a fork does not copy the
        # pages
        self.dontfork = dontfork

    @property
    def shared(self):
        return self.perms[3] == "s"


_MAPS_LINE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+) *(.*)")


def parse_maps_line(line):
    m = _MAPS_LINE.fullmatch(line)
    if m is None:
        raise ValueError(f"unexpected maps line {line!r}")
    start, end, perms, offset, dev, inode, name = m.groups()
    return MapsLine(int(start, 16), int(end, 16), perms, int(offset, 16), dev, int(inode),
                    name)


def vm_flags_of(mnemonics):
    """The VM_* bits of a smaps "VmFlags:" value."""
    return sum(VM_FLAG_BITS.get(name, 0) for name in mnemonics.split())


def maps(pid):
    """The VMAs of `pid` from /proc/<pid>/smaps: maps lines with their VmFlags."""
    text = read_text(f"/proc/{pid}/smaps", MAPS_LIMIT + 1)
    if len(text) > MAPS_LIMIT:
        raise OSError(errno.EFBIG, f"/proc/{pid}/smaps is larger than {MAPS_LIMIT} bytes")
    vmas = []
    for line in text.splitlines():
        if line.startswith("VmFlags:"):
            mnemonics = line[len("VmFlags:"):]
            vmas[-1].vm_flags = vm_flags_of(mnemonics)
            vmas[-1].dontfork = bool({"dc", "wf"} & set(mnemonics.split()))
        elif line and line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
            vmas.append(parse_maps_line(line))
    return vmas


def plain_maps(pid):
    """The VMAs of `pid` from /proc/<pid>/maps, without VmFlags: no page-table walk, unlike
    smaps (milliseconds per GiB mapped)."""
    text = read_text(f"/proc/{pid}/maps", MAPS_LIMIT + 1)
    if len(text) > MAPS_LIMIT:
        raise OSError(errno.EFBIG, f"/proc/{pid}/maps is larger than {MAPS_LIMIT} bytes")
    return [parse_maps_line(line) for line in text.splitlines() if line]


def shape(line):
    """What /proc/<pid>/maps shows of a VMA."""
    return line.start, line.end, line.perms, line.offset, line.dev, line.inode, line.name


VM_LOCKED = VM_FLAG_BITS["lo"]
VM_DONTCOPY = VM_FLAG_BITS["dc"]


def locked_kib(lines):
    """What /proc/<pid>/status says as VmLck for VMAs `lines` (mlocked ones count)."""
    return sum(line.end - line.start for line in lines if line.vm_flags & VM_LOCKED) // 1024


def stat_fields(entry):
    """/proc/<entry>/stat (entry: a pid, or "pid/task/tid") as {field number: text}, the
    numbers of proc(5)."""
    text = read_text(f"/proc/{entry}/stat")
    close = text.rindex(")")          # comm may hold spaces and parentheses
    fields = {1: text[:text.index(" ")], 2: text[text.index("(") + 1:close]}
    for number, value in enumerate(text[close + 2:].split(), start=3):
        fields[number] = value
    return fields


def status_fields(path):
    """A /proc status file as {key: value text}."""
    out = {}
    for line in read_text(path).splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def auxv(pid, word_size):
    """[(type, value), ...] up to and including AT_NULL; `word_size` 4 for 32-bit tasks."""
    data = read_bytes(f"/proc/{pid}/auxv")
    pairs = []
    for i in range(0, len(data) - 2 * word_size + 1, 2 * word_size):
        key = int.from_bytes(data[i:i + word_size], "little")
        value = int.from_bytes(data[i + word_size:i + 2 * word_size], "little")
        pairs.append((key, value))
        if key == 0:
            break
    return pairs


def thread_ids(pid):
    """Thread ids of process `pid`, the leader first."""
    tids = sorted(int(name) for name in os.listdir(f"/proc/{pid}/task")[:MAX_TASKS])
    return [pid] + [tid for tid in tids if tid != pid]


def children(pid):
    """Processes whose parent is `pid`, ascending (a scan of /proc; no children file needed)."""
    found = []
    for name in os.listdir("/proc")[:MAX_TASKS]:
        if not name.isdigit():
            continue
        try:
            ppid = int(stat_fields(name)[4])
        except (OSError, KeyError, ValueError):
            continue          # exited meanwhile
        if ppid == pid:
            found.append(int(name))
    return sorted(found)


def page_runs(pagemap_fd, start, end, table):
    """(first, stop) address runs of the pages in [start, end) that `table` selects, read
    from an open /proc/<pid>/pagemap in chunks."""
    runs = []
    for chunk_start in range(start, end, PAGEMAP_CHUNK * PAGE_SIZE):
        chunk_end = min(end, chunk_start + PAGEMAP_CHUNK * PAGE_SIZE)
        count = (chunk_end - chunk_start) // PAGE_SIZE
        raw = os.pread(pagemap_fd, count * 8, chunk_start // PAGE_SIZE * 8)
        selected = raw[7::8].translate(table)
        for first, stop in _ones(selected):
            lo, hi = chunk_start + first * PAGE_SIZE, chunk_start + stop * PAGE_SIZE
            if runs and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((lo, hi))
    return runs


def _ones(flags):
    """(first, stop) index runs of b"\\x01" in `flags`, found in C by bytes.find."""
    pos = flags.find(1)
    while pos >= 0:
        stop = flags.find(0, pos)
        if stop < 0:
            stop = len(flags)
        yield pos, stop
        pos = flags.find(1, stop)
