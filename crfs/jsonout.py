"""`--json` output of info, records, verify (and diff, built by crfs.diff): the keys
documented in docs/json.md. Addresses, register values and flag words are "0x…" strings
(JSON numbers lose 64-bit precision in many readers); counts and file offsets are numbers.
"""

import json
import sys

from crfs import render
from crfs.formats.common import encode_text


def write(obj, out=None):
    out = out or sys.stdout
    json.dump(obj, out, indent=1, default=_text)
    out.write("\n")


def _text(value):
    """Values json cannot write itself (bytes, header objects): as text."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def name(text):
    """A name from an image (comm, file) as JSON text: its bytes decoded as UTF-8, invalid
    bytes replaced (the text output quotes the raw bytes instead)."""
    return encode_text(text).decode("utf-8", "replace") if text is not None else None


def info(image, path):
    tasks = [{"pid": t.pid, "tgid": t.tgid, "ppid": t.ppid, "comm": name(t.comm),
              "vmas": len(t.mm.vmas) if t.mm else 0,
              "pages": t.mm.page_count() if t.mm else 0} for t in image.tasks]
    mms = []
    for mm in image.mms():
        vmas = [{"start": f"{v.start:#x}", "end": f"{v.end:#x}", "perms": render.perms(v),
                 "pgoff": v.pgoff, "name": name(render.vma_name(v, mm)), "kind": v.kind,
                 "pages": len(v.pages)} for v in mm.vmas]
        mms.append({"pids": [t.pid for t in image.tasks if t.mm is mm], "vmas": vmas})
    return {"image": path, "format": image.description, "arch": image.arch,
            "header": {str(k): v for k, v in image.header.items()},
            "tasks": tasks, "mms": mms}


def record(rec):
    return {"offset": rec.offset, "type": rec.name, "length": rec.length,
            "note": rec.note or ""}


def write_records(records, path, out=None):
    """{"image": path, "records": [...]}, written a record at a time (never all held)."""
    out = out or sys.stdout
    out.write('{"image": ' + json.dumps(path) + ', "records": [')
    sep = "\n "
    for rec in records:
        out.write(sep + json.dumps(record(rec)))
        sep = ",\n "
    out.write("\n]}\n")


def verify(report, path):
    return {"image": path, "format": report.description, "sound": report.sound,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                       for c in report.checks]}
