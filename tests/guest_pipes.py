"""Guest side of the pipe tests (tests/test_kmod_guest.py, step "pipes"; issue #11).

pipes_target (tests/c/pipes_target.c: a read end whose write end no process has, a 1 MiB
pipe holding 300000 bytes, a 256 KiB pipe with no writer, a write end with no reader) is
checkpointed both ways, restarted by crfs-restart (which makes the pipes larger than 64 KiB
and hands them in) and runs its own checks. Then the refusals: pipe FILE records whose
pipe_flags or pipe_size_log2 lie (CHECK), a pipe's missing end no longer said absent and
a large pipe not handed in (RESTART). Runs inside the guest; decides nothing.
"""

import os
import struct

import guest_anonfd as ga
import guest_files as gf
from guest_util import stage

WORK = "/tmp/crfs-pipes"
FILE_PIPE = 2


def pipe_files(image):
    """{fd-ordered objref: (f_flags, pipe_objref, offset)} of the image's pipe FILEs."""
    return {objref: (f_flags, pipe, offset)
            for objref, (f_type, f_flags, pipe, offset) in ga.files_of(image).items()
            if f_type == FILE_PIPE}


def _set(offset, fmt_, value):
    return lambda data, recs: struct.pack_into(fmt_, data, offset, value)


def lying_records(image):
    """Pipe FILE records made wrong: CHECK refuses each (errno, reason)."""
    files = pipe_files(image)
    by_pipe = {}
    for objref, (f_flags, pipe, offset) in sorted(files.items()):
        by_pipe.setdefault(pipe, []).append((f_flags & 3, offset))
    half, big, mid = (by_pipe[p] for p in sorted(by_pipe)[:3])
    patches = {
        "flags_unknown": _set(half[0][1] + 52, "<H", 0x6),
        "no_reader_but_read_end": _set(half[0][1] + 52, "<H", 0x1),
        "size_log2_40": _set(big[0][1] + 54, "<B", 40),
        "size_log2_small": _set(mid[0][1] + 54, "<B", 12),
        "ends_differ": _set(big[1][1] + 54, "<B", 17),
    }
    out = {}
    for label, fn in patches.items():
        out[label] = ga.check_outcome(gf.patch(image, f"{image}.{label}", fn))
    return out, half, big


def restart_refusals(image, half, big, restarter, work):
    """RESTARTs that fail before anything changes: the missing write end no longer said
    absent (-S: nothing handed in), the 1 MiB pipe not made (-A), a 2 GiB pipe (both
    ends: the kernel's CHECK takes it, crfs-restart cannot make it)."""
    bad = gf.patch(image, f"{image}.writer_somewhere", _set(half[0][1] + 52, "<H", 0))

    def huge(data, recs):
        for _, offset in big:
            struct.pack_into("<B", data, offset + 54, 31)

    too_big = gf.patch(image, f"{image}.size_2g", huge)
    return {
        "writer_somewhere": gf.outcome(gf.restart(bad, restarter, f"{bad}.out", ("-S",))),
        "big_not_handed": gf.outcome(gf.restart(image, restarter,
                                                os.path.join(work, "none.out"), ("-A",))),
        "size_2g": gf.outcome(gf.restart(too_big, restarter, f"{too_big}.out")),
    }


def pipes_step(manifest):
    exe = stage(WORK, {"pipes_target": manifest["pipes_target"]})["pipes_target"]
    restarter = manifest["restarter"]
    result = {}
    for via in ("ptrace", "kernel"):
        result[via], image = ga.run_one(via, exe, WORK, restarter, via)
        if image:
            result[via]["pipe_files"] = {str(k): v[:2] for k, v in pipe_files(image).items()}
            with open(image, "rb") as f:
                data = f.read()
            result[via]["pipe_state"] = [struct.unpack_from("<HB", data, v[2] + 52)
                                         for v in pipe_files(image).values()]
    image = os.path.join(WORK, "ptrace.img")
    if os.path.exists(image):
        result["records"], half, big = lying_records(image)
        result["refused"] = restart_refusals(image, half, big, restarter, WORK)
    return result
