"""Integrity report of one image: what `crfs verify` prints and the `verify` file shows."""

from dataclasses import dataclass, field

from crfs.errors import FormatError
from crfs.formats.x86 import PAGE_SIZE
from crfs.formats.ckpt import CRFS_UFLAG_SNAPSHOT
from crfs.model import registry
from crfs.model.chain import TRACKING_NAMES, ChainError


@dataclass
class Check:
    ok: bool
    name: str
    detail: str


@dataclass
class Report:
    description: str = "unknown"
    checks: list = field(default_factory=list)
    image: object = None     # the Image indexed while checking, if it could be

    @property
    def sound(self):
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, ok, name, detail):
        self.checks.append(Check(ok, name, detail))
        return ok

    def text(self, name=None):
        """The report as `crfs verify` prints it, headed by the image's name if given."""
        lines = [f"image: {name}"] if name is not None else []
        lines.append(f"format: {self.description}")
        lines += [f"{'ok' if c.ok else 'FAIL':<5} {c.name}: {c.detail}" for c in self.checks]
        lines.append(f"result: {'sound' if self.sound else 'unsound'}")
        return "\n".join(lines) + "\n"


def verify(source, image=None, progress=None):
    """Check `source` from its magic to its last page; never raises FormatError.

    `image`: the source already indexed (its checks are not repeated); else it is indexed
    here and kept as report.image. `progress(done, total)`: called with the bytes walked
    so far while the records are walked (the long part of a big image)."""
    report = Report()
    try:
        fmt = registry.detect(source)
    except FormatError as exc:
        report.add(False, "magic", str(exc))
        return report
    report.add(True, "magic", f"{fmt} image")
    if not _check_records(report, source, progress or (lambda done, total: None)):
        return report
    if image is None:
        try:
            image = registry.load(source)
        except ChainError as exc:
            report.add(False, "chain", str(exc))
            return report
        except FormatError as exc:
            report.add(False, "contents", str(exc))
            return report
    report.image = image
    report.description = image.description
    _check_image(report, image)
    return report


def _check_records(report, source, progress):
    count = end = 0
    try:
        for record in registry.records(source):
            count += 1
            end = record.offset + record.length
            progress(end, source.size)
    except FormatError as exc:
        return report.add(False, "records", str(exc))
    if end != source.size:
        return report.add(False, "records", f"{source.size - end} bytes after the last record")
    return report.add(True, "records", f"{count} records, {end} bytes, all inside the file")


def _check_image(report, image):
    header = image.header
    version = header.get("kernel", "?")
    report.add(True, "version", f"kernel {version}"
               + (f" rev {header['rev']}" if "rev" in header else ""))
    report.add(True, "arch", image.arch)
    if image.has_trailer is not None:
        report.add(image.has_trailer, "trailer", "present" if image.has_trailer else "missing")
    if image.format == "linux-cr" and header.get("uflags", 0) & CRFS_UFLAG_SNAPSHOT:
        report.add(True, "checkpoint", "memory from a copy-on-write snapshot (the processes "
                                       "ran on while it was written)")
    if image.chain:
        parents = ", ".join(f"{name} ({TRACKING_NAMES.get(how, how)})"
                            for name, how in image.chain)
        report.add(True, "chain", f"incremental: parents {parents}: present, size and "
                                  f"SHA-256 as named")
    _check_pages(report, image)
    _check_tasks(report, image)
    _note_file_ids(report, image)


def _check_pages(report, image):
    total = vma_count = 0
    for mm in image.mms():
        for vma in mm.vmas:
            vma_count += 1
            total += len(vma.pages)
            problem = _page_problem(vma)
            if problem:
                report.add(False, "pages", f"VMA {vma.start:#x}-{vma.end:#x}: {problem}")
                return
    report.add(True, "pages", f"{total} pages in {vma_count} VMAs, each inside its VMA, "
                              f"ascending")


def _page_problem(vma):
    if len(vma.pages) > (vma.end - vma.start) // PAGE_SIZE:
        return f"{len(vma.pages)} pages do not fit"
    if not vma.pages.is_ascending():
        return "page addresses not ascending"
    pages = vma.pages
    if pages and (pages.first < vma.start or pages.last + PAGE_SIZE > vma.end):
        return "a page lies outside the VMA"
    return None


def _note_file_ids(report, image):
    """For images that record them: how many mapped files a restart will check."""
    files = {}
    for mm in image.mms():
        for vma in mm.vmas:
            if vma.file is not None:
                files.setdefault(vma.file, vma.file_id)
    recorded = sum(file_id is not None for file_id in files.values())
    if recorded:
        report.add(True, "file identity", f"recorded for {recorded} of {len(files)} mapped "
                                          f"files (checked at restart)")


def _check_tasks(report, image):
    if not image.tasks:
        report.add(False, "tasks", "no task")
        return
    for task in image.tasks:
        # a zombie (it had exited) keeps only its pids and exit status
        missing = [what for what, have in (("registers", task.regs or task.exit.state),
                                           ("comm", task.comm)) if not have]
        if missing:
            report.add(False, "tasks", f"pid {task.pid}: no {', '.join(missing)}")
            return
    report.add(True, "tasks", f"{len(image.tasks)} complete")
