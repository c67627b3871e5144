"""The `crfs` command: one argparse subcommand each (mount, info, records, verify, core, demo,
checkpoint); `crfs [STORE] MOUNTPOINT -o …`, as mount.fuse runs it, is `crfs mount`."""

import argparse
import os
import sys

from crfs import __version__
from crfs.errors import CrfsError, FormatError
from crfs.model import registry
from crfs.store_paths import DEFAULT_STORE

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def cmd_info(args):
    image = registry.open_image(args.image)
    try:
        if args.json:
            from crfs import jsonout
            jsonout.write(jsonout.info(image, args.image))
            return EXIT_OK
        sys.stdout.write(info_text(image))
    finally:
        image.close()
    return EXIT_OK


def info_text(image):
    from crfs import render
    out = [render.header(image), f"tasks: {len(image.tasks)}\n"]
    for task in image.tasks:
        mm = task.mm
        pages = mm.page_count() if mm else 0
        vmas = len(mm.vmas) if mm else 0
        out.append(f"  pid {task.pid} tgid {task.tgid} ppid {task.ppid} comm {render.quoted(task.comm)}: "
                   f"{vmas} VMAs, {pages} pages\n")
    for mm in image.mms():
        owners = ",".join(str(t.pid) for t in image.tasks if t.mm is mm)
        out.append(f"mm of pid {owners}:\n")
        for vma in mm.vmas:
            line = render.maps_line(vma, mm, image.arch).rstrip("\n")
            out.append(f"  {line}  [{vma.kind}, {len(vma.pages)} pages]\n")
    return "".join(out)


def cmd_records(args):
    from crfs import render
    with registry.open_source(args.image) as source:
        try:
            if args.json:
                from crfs import jsonout
                jsonout.write_records(registry.records(source), args.image)
                return EXIT_OK
            for rec in registry.records(source):
                sys.stdout.write(render.record_line(rec))
        except FormatError as exc:
            exc.path = args.image
            raise
    return EXIT_OK


def cmd_verify(args):
    from crfs.model.verify import verify
    from crfs.checkpoint.progress import TerminalProgress
    progress = TerminalProgress("crfs verify")     # on a terminal, after a second
    with registry.open_source(args.image) as source:
        try:
            report = verify(source, progress=progress)
        finally:
            progress.finish()
    if args.json:
        from crfs import jsonout
        jsonout.write(jsonout.verify(report, args.image))
    else:
        sys.stdout.write(report.text(args.image))
    return EXIT_OK if report.sound else EXIT_FAIL


def cmd_core(args):
    from crfs.model.core import CoreFile
    image = registry.open_image(args.image)
    try:
        try:
            task = image.task(args.pid)
        except KeyError:
            print(f"{args.image}: no task {args.pid}", file=sys.stderr)
            return EXIT_FAIL
        if task.mm is None or task.regs is None:
            print(f"{args.image}: task {args.pid} has no address space or registers",
                  file=sys.stderr)
            return EXIT_FAIL
        core = CoreFile(image, task)
        with open(args.output, "wb") as out:
            for chunk in core.chunks():   # never the whole core in memory
                out.write(chunk)
    finally:
        image.close()
    return EXIT_OK


def cmd_demo(args):
    from crfs.demo import write_demo_store
    for path in write_demo_store(args.store):
        print(path)
    return EXIT_OK


def cmd_checkpoint(args):
    from crfs.checkpoint import checkpoint_file, checkpoint_into_store_file
    from crfs.checkpoint.progress import TerminalProgress
    after = "stop" if args.leave_stopped else "kill" if args.kill else "detach"
    progress = TerminalProgress(f"checkpoint {args.pid}")
    progress.enabled = progress.enabled and not args.quiet
    report = {}
    options = dict(fmt=args.format, tree=args.tree, after=after,
                   progress=progress if progress.enabled else None,
                   via=args.via, parent=args.parent, track=args.track, report=report,
                   stop=args.stop)
    try:
        if args.output:
            path = checkpoint_file(args.pid, args.output, **options)
        else:
            os.makedirs(args.store, exist_ok=True)    # as mount and demo create it
            path = checkpoint_into_store_file(args.pid, args.store, **options)
    finally:
        progress.finish()
    if report.get("note"):
        print(f"crfs checkpoint: {report['note']}", file=sys.stderr)
    if not args.quiet and sys.stderr.isatty() and "time" in report:
        print(summary_line(args.pid, report), file=sys.stderr)
    print(path)
    return EXIT_OK


def summary_line(pid, report):
    """One line on a terminal: how, how long the program was stopped, what was written."""
    if report["mode"] == "kernel":      # kmod/crfs-front.c prints the same line
        how = "snapshot, " if report.get("snapshot") else ""
        return (f"checkpoint {pid}: {how}written by crfs.ko, stopped "
                f"{report['frozen'] * 1000:.0f} ms, {report['image_bytes'] / 2**20:.1f} MiB "
                f"image, {report['time']:.2f} s")
    pages = report["bytes"] // 4096
    parent = report.get("parent")
    kind = f"incremental on {os.path.basename(parent)}" if parent else "full"
    return (f"checkpoint {pid}: {report['mode']}, stopped {report['frozen'] * 1000:.0f} ms, "
            f"{pages} pages ({report['bytes'] / 2**20:.1f} MiB, {kind}), "
            f"{report['time']:.2f} s")


def cmd_diff(args):
    """Exit 0: equal, 1: different, 2: trouble (as diff(1))."""
    from crfs import diff
    from crfs.checkpoint.progress import TerminalProgress
    images = []
    progress = TerminalProgress("crfs diff")     # on a terminal, after a second
    try:
        for path in (args.a, args.b):
            images.append(registry.open_image(path))
        result = diff.diff(*images, args.a, args.b, progress=progress)
    except CrfsError as exc:
        print(error_line(exc, args.reporter), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"crfs diff: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        progress.finish()
        for image in images:
            image.close()
    if args.json:
        from crfs import jsonout
        jsonout.write(result)
    else:
        sys.stdout.write(diff.text(result))
    return EXIT_OK if result["equal"] else EXIT_FAIL


def _add_diff_parser(sub):
    text = "what changed between two images of a program; exit 0 if equal, 1 if not, 2 on error"
    p = sub.add_parser("diff", help=text, description=text + ". Tasks added and gone, "
                       "registers, credentials, signals and fs changed, VMAs added, removed "
                       "or resized, pages changed by address range (read a page at a time).")
    p.add_argument("a", metavar="A", help="the older image")
    p.add_argument("b", metavar="B", help="the newer image")
    p.add_argument("--json", action="store_true",
                   help="print JSON, with the keys of docs/json.md")
    p.set_defaults(func=cmd_diff, image=None, reporter="crfs diff")


def _add_image_parsers(sub):
    for name, func, text in (
        ("info", cmd_info, "show the header, tasks and VMAs of an image"),
        ("records", cmd_records, "list every record: file offset, C type name, length"),
        ("verify", cmd_verify, "check an image's integrity; exit 0 if sound, 1 if not"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("image", metavar="IMAGE", help="checkpoint image file")
        p.add_argument("--json", action="store_true",
                       help="print JSON, with the keys of docs/json.md")
        p.set_defaults(func=func)


def _add_core_parser(sub):
    text = "write the ELF core file of a task's process (for gdb)"
    p = sub.add_parser("core", help=text, description=text)
    p.add_argument("image", metavar="IMAGE", help="checkpoint image file")
    p.add_argument("pid", metavar="PID", type=int, help="pid of the task in the image")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="core file to write")
    p.set_defaults(func=cmd_core)


def _add_demo_parser(sub):
    p = sub.add_parser("demo", help="write demo images (one per format and arch) into a store",
                       description="write demo images into a store")
    p.add_argument("store", metavar="STORE", nargs="?", default=DEFAULT_STORE,
                   help="store directory (default %(default)s)")
    p.set_defaults(func=cmd_demo, image=None)


def _add_checkpoint_parser(sub):
    from crfs.checkpoint import via_kernel
    text = ("checkpoint a live process (ptrace, works on any kernel; or the crfs kernel "
            "module) into an image file")
    p = sub.add_parser("checkpoint", help=text, description=text + ". The image is written "
                       "to a temporary name and renamed, so it appears whole.")
    p.add_argument("pid", metavar="PID", type=int, help="the process to checkpoint")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="FILE", help="image file to write")
    where.add_argument("--store", metavar="DIR", default=DEFAULT_STORE,
                       help="write DIR/<comm>-<pid>-<UTC time>.ckpt, created if missing "
                            "(default %(default)s, the store crfs mounts)")
    p.add_argument("--tree", action="store_true",
                   help="include all descendants (depth first; pids and ppids kept)")
    then = p.add_mutually_exclusive_group()
    then.add_argument("--leave-stopped", action="store_true",
                      help="leave the process stopped afterwards (SIGCONT resumes it)")
    then.add_argument("--kill", action="store_true",
                      help="kill the process afterwards (returns once its pids are free, "
                      "at most 10 s after the kill)")
    p.add_argument("--format", choices=tuple(registry.FORMATS),
                   default=registry.DEFAULT_FORMAT, help=_formats_help())
    p.add_argument("--via", choices=via_kernel.VIA, default=via_kernel.DEFAULT_VIA,
                   help="who writes the image: kernel = the crfs module (/dev/crfs, root; "
                        "64-bit processes, threads and trees, ckpt only), ptrace = crfs itself, "
                        "auto = the module when it can, else crfs (default %(default)s)")
    p.add_argument("--parent", metavar="IMAGE",
                   help="write only the pages written since IMAGE (an earlier checkpoint of "
                        "this process in the same directory, taken with --track or --parent);"
                        " a full image if tracking did not start at IMAGE")
    p.add_argument("--track", action="store_true",
                   help="start tracking written pages, for a later --parent")
    p.add_argument("--stop", action="store_true",
                   help="keep the processes stopped for the whole write (default: only "
                        "while a copy-on-write snapshot is taken)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress or summary line on the terminal")
    p.set_defaults(func=cmd_checkpoint, image=None, reporter="crfs checkpoint")


def _formats_help():
    """"cr: linux-cr cr_hdr v4, one task; ckpt: …", from the registry's records."""
    return "; ".join(f"{f.name}: {f.summary}" for f in registry.FORMATS.values())


def _add_convert_parser(sub):
    from crfs import convert
    convert.add_parser(sub)


def _add_restart_parser(sub):
    from crfs import restart_cmd
    restart_cmd.add_parser(sub).set_defaults(image=None)


def _add_doctor_parser(sub):
    from crfs import doctor
    doctor.add_parser(sub)


def cmd_manpages(args):
    from crfs import manpages
    for path in manpages.write(args.directory):
        print(path)
    return EXIT_OK


def _add_manpages_parser(sub):
    # hidden (no help=): what .ci/setup runs to build the man pages
    p = sub.add_parser("manpages", description="write crfs's man pages under DIR")
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(func=cmd_manpages, image=None)


def _add_mount_parser(sub):
    from crfs import mount
    mount.add_parser(sub).set_defaults(image=None)


# (names, the function adding their parsers), in the order `crfs --help` lists them.
SUBCOMMANDS = ((("mount",), _add_mount_parser),
               (("info", "records", "verify"), _add_image_parsers),
               (("core",), _add_core_parser),
               (("diff",), _add_diff_parser),
               (("demo",), _add_demo_parser),
               (("checkpoint",), _add_checkpoint_parser),
               (("convert",), _add_convert_parser),
               (("restart",), _add_restart_parser),
               (("doctor",), _add_doctor_parser),
               (("manpages",), _add_manpages_parser))
COMMANDS = tuple(name for names, _ in SUBCOMMANDS for name in names)
HELP_OPTIONS = ("-h", "--help")
TOP_LEVEL_OPTIONS = (*HELP_OPTIONS, "--version")


def _columns():
    """The terminal's width as shutil.get_terminal_size() gives it (COLUMNS, else stdout's
    terminal, else 80), without importing shutil, which imports bz2, lzma and zlib."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, of the same width. argparse makes one per add_argument()
    (to check the metavar), each importing shutil for the width: seven modules, three
    of them shared libraries, in the start-up of every command (issue #13)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help formatter is _Formatter unless told otherwise (its
    subcommands' parsers are of its class)."""

    def __init__(self, *args, formatter_class=_Formatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser(parser_class=_Parser, command=None):
    """The whole parser; with `command` (a name in COMMANDS), only that subcommand's
    parsers: what parsing a command line that names it needs (each adds its module's
    imports: `crfs checkpoint` need not import the FUSE daemon)."""
    parser = parser_class(
        prog="crfs",
        description="Browse, checkpoint and restart process checkpoint images "
                    "(linux-cr cr_hdr and ckpt_hdr, OpenVZ cpt).",
        epilog="`crfs [STORE] MOUNTPOINT -o OPTIONS`, as mount.fuse runs it, is `crfs mount`. "
               "A first word that names a subcommand is that subcommand, unless the rest "
               "does not fit it but is a mount, with options (-o, -f, -d), of an existing "
               "directory: `crfs info -o store=DIR` mounts ./info. `crfs mount …` always "
               "mounts. "
               "`crfs COMMAND --help` describes each.")
    parser.add_argument("--version", action="version", version=f"crfs {__version__}")
    parser.set_defaults(reporter="crfs")     # how error lines begin
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for names, add_parsers in SUBCOMMANDS:
        if command is None or command in names:
            add_parsers(sub)
    return parser


class _Misfit(Exception):
    """Arguments a parser does not accept."""


class _QuietParser(_Parser):
    """A parser that raises _Misfit instead of printing usage and exiting."""

    def error(self, message):
        raise _Misfit(message)

    def exit(self, status=0, message=None):
        raise _Misfit(message)


# argv (a tuple) -> the Namespace _parses() got, for main() not to build the parser again
_PARSED = {}


def _parses(argv):
    """The Namespace `argv` parses into, or None (nothing printed)."""
    try:
        args = build_parser(_QuietParser, argv[0]).parse_args(argv)
    except _Misfit:
        return None
    _PARSED[tuple(argv)] = args
    return args


def with_subcommand(argv):
    """`argv` with its subcommand spelled out: mount.fuse runs `crfs [SOURCE] MOUNTPOINT
    -o …`, which names none, and a mount point may be called like a subcommand."""
    if not argv or argv[0] in TOP_LEVEL_OPTIONS:
        return argv
    if argv[0] not in COMMANDS or _mounts_a_directory(argv):
        return ["mount", *argv]
    return argv


def _mounts_a_directory(argv):
    """Whether `argv`, which starts with a subcommand's name, is rather a mount: it does not
    fit that subcommand but is a mount, with options, of an existing directory. (mount(8)
    always passes -o; a bare `crfs info` is a mistyped info, not a mount of ./info.)"""
    if argv[0] == "mount" or any(arg in HELP_OPTIONS for arg in argv):
        return False        # `crfs info --help` asks about info
    if _parses(argv) is not None:
        return False
    as_mount = _parses(["mount", *argv])
    return (as_mount is not None and _has_mount_options(as_mount)
            and os.path.isdir(as_mount.mountpoint))


def _has_mount_options(args):
    return bool(args.options or args.foreground or args.debug)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # Names from images (comm, paths) keep their bytes: print them as stored, as ls does.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="surrogateescape")
    _PARSED.clear()
    argv = with_subcommand(argv)
    args = _PARSED.pop(tuple(argv), None)     # parsed already: a subcommand's arguments
    if not getattr(args, "func", None):
        parser = build_parser(command=argv[0] if argv and argv[0] in COMMANDS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
    return run(args)


# The commands console() ends without the interpreter's finalization.
QUICK_EXIT = ("cmd_checkpoint",)
_ran = []      # the command main() ran last


def console():
    """The `crfs` command (pyproject's console script, `python -m crfs`): main(); after a
    command of QUICK_EXIT, once stdout and stderr are flushed, the process ends at once
    (os._exit): tearing down every module and object costs `crfs checkpoint` about a
    sixth of its CPU time, tenths of a second in the TCG guest (issue #13). Its files are
    closed by then, and it registers no atexit handler."""
    status = main()
    if _ran and _ran[0] in QUICK_EXIT:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:        # e.g. a closed pipe: as the interpreter's own exit says
            return status
        os._exit(status or 0)
    return status


def run(args):
    """args.func(args), every failure reported as one line (exit 1), never a traceback."""
    _ran[:] = [args.func.__name__]
    try:
        return args.func(args)
    except CrfsError as exc:
        print(error_line(exc, args.reporter), file=sys.stderr)
    except BrokenPipeError:       # e.g. `crfs records IMAGE | head`
        pass
    except OSError as exc:        # the image file itself
        print(f"crfs: {exc.filename or args.image}: {exc.strerror}", file=sys.stderr)
    return EXIT_FAIL


def error_line(exc, reporter):
    """What is printed for `exc`: a FormatError names its file itself."""
    if isinstance(exc, FormatError):
        return str(exc)
    return f"{reporter}: {exc}"


if __name__ == "__main__":
    sys.exit(main())
