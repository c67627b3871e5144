"""`crfs restart IMAGE`: the restart of the mount's restart/ box, from the command line.

The same steps as the daemon (crfs.fs.restart): verify the image, check that the kernel
module restarts its format, then crfs.kernel.restart_in_child() runs the restarter
(crfs-restart), which becomes the program. The report is one line in words on stderr:
`restored pid N`, or why not (with the record and its file offset when the kernel module
named them); the program's stdout and stderr are ours unless --log FILE.
"""

import argparse
import errno
import os
import sys

from crfs import __version__, kernel
from crfs.errors import CrfsError
from crfs.formats import ckpt
from crfs.formats.source import Source
from crfs.model import registry
from crfs.model.verify import verify

EXIT_OK, EXIT_FAIL = 0, 1

MODULE_HELP = ("the crfs kernel module is not loaded (no {device}): on a host that loads "
               f"modules, `dkms add ./kmod && dkms install crfs/{__version__} && modprobe "
               "crfs` (README: Hosts that load modules), or `make -C kmod && insmod "
               "kmod/crfs.ko`; `crfs doctor` says what else is missing")


class Refused(CrfsError):
    """The image was not restarted: the message says why."""


def check_image(path):
    """Refused unless the image at `path` is sound and of a format the module restarts."""
    with Source.open(path) as source:
        report = verify(source)
        if not report.sound:
            failed = next(c for c in report.checks if not c.ok)
            raise Refused(f"unsound image: {failed.name}: {failed.detail}", errno.EINVAL)
        image = report.image
        if not registry.restartable(image):
            only = " or ".join(registry.restartable_descriptions())
            raise Refused(f"cannot restart a {image.description} image: only {only} images "
                          "can be restarted", errno.EOPNOTSUPP)


def refusal(outcome, device):
    """The words for a failed Outcome of restart_in_child()."""
    code = outcome.errno
    if outcome.stage == "restarter":
        return f"{outcome.reason} (bash .ci/setup installs it at {kernel.INSTALLED_RESTARTER})"
    if outcome.stage == "open-device":
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            return MODULE_HELP.format(device=device)
        return f"cannot open {device}: {outcome.reason}"
    if outcome.stage == "version":
        return f"{device}: {outcome.reason}"
    where = ""
    if outcome.offset is not None:
        where = (f"record {ckpt.record_name(outcome.record_type)} at offset "
                 f"{outcome.offset:#x}: ")
    reason = outcome.reason or os.strerror(code)
    if code == errno.EINVAL:
        return f"the kernel module rejected the image: {where}{reason}"
    if code in (errno.ENOEXEC, errno.EOPNOTSUPP):
        return f"the kernel module cannot restart it: {where}{reason}"
    return f"{os.strerror(code)}: {where}{reason}"


def inherit_fd(text):
    """IMAGEFD=FD of --inherit-fd: (IMAGEFD, FD), FD one of ours that is open."""
    image_fd, sep, fd = text.partition("=")
    if not (sep and image_fd.isdigit() and fd.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected IMAGEFD=FD, e.g. 5=3")
    try:
        os.fstat(int(fd))
    except OSError:
        raise argparse.ArgumentTypeError(f"{text!r}: fd {fd} is not open here") from None
    return int(image_fd), int(fd)


def restarter_options(args):
    """crfs-restart's options for the fds: -i IMAGEFD=FD each, -R to replace stdio; and
    --lazy."""
    options = []
    for image_fd, fd in args.inherit_fd:
        options += ["-i", f"{image_fd}={fd}"]
    if args.stdio == "replace":
        options.append("-R")
    if args.lazy:
        options.append("--lazy")
    return options


def exit_status(returncode):
    """A shell's $? for a Popen returncode."""
    return 128 - returncode if returncode < 0 else returncode


def restart(args):
    """The `crfs restart` subcommand; its exit status."""
    name = f"crfs restart: {args.image}"
    try:
        check_image(args.image)
    except Refused as exc:
        print(f"{name}: not restarted: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if not os.path.exists(args.device):
        print(f"{name}: not restarted: {MODULE_HELP.format(device=args.device)}",
              file=sys.stderr)
        return EXIT_FAIL
    output = open(args.log, "ab") if args.log else sys.stdout
    sys.stdout.flush()
    try:
        outcome = kernel.restart_in_child(os.path.abspath(args.image), args.device,
                                          stdout=output, new_pids=args.new_pids,
                                          options=restarter_options(args),
                                          pass_fds=[fd for _, fd in args.inherit_fd])
    finally:
        if args.log:
            output.close()
    if outcome.errno:
        print(f"{name}: not restarted: {refusal(outcome, args.device)}", file=sys.stderr)
        return EXIT_FAIL
    print(f"{name}: restored pid {outcome.pid}", file=sys.stderr)
    if not args.wait:
        return EXIT_OK
    outcome.process.wait()
    print(f"{name}: pid {outcome.pid} {kernel.describe_exit(outcome.process.returncode)}",
          file=sys.stderr)
    return exit_status(outcome.process.returncode)


def add_parser(sub):
    text = "restart an image through the crfs kernel module (as restart/ of a mount)"
    p = sub.add_parser("restart", help=text, description=text + ". The image is verified "
                       "first; the restored program runs on in a session of its own, its "
                       "stdout and stderr ours (or --log FILE). One line on stderr says "
                       "`restored pid N` or why not, with the record and its file offset "
                       "when the kernel named them.")
    p.add_argument("image", metavar="IMAGE", help="checkpoint image (linux-cr ckpt_hdr "
                                                  "x86_64)")
    p.add_argument("-N", "--new-pids", action="store_true",
                   help="give the restored tasks new pids (default: their pids from the "
                        "image when the pids are free and we may, else new ones)")
    p.add_argument("-w", "--wait", action="store_true",
                   help="wait for the program to end; exit with its status (128+N when "
                        "killed by signal N)")
    p.add_argument("--log", metavar="FILE", help="append the program's stdout and stderr "
                                                 "to FILE")
    p.add_argument("-i", "--inherit-fd", metavar="IMAGEFD=FD", type=inherit_fd, default=[],
                   action="append",
                   help="our open fd FD becomes the program's fd IMAGEFD, whatever the image "
                        "had there (as criu restore --inherit-fd); repeatable")
    p.add_argument("--stdio", choices=("inherit", "replace"), default="inherit",
                   help="inherit (default): the program's fds 0-2 are the image's files, "
                        "reopened; only a terminal, socket or pipe end that is gone takes "
                        "ours. replace: fds 0-2 are ours (stdin /dev/null, stdout and "
                        "stderr ours or --log), whatever the image had")
    p.add_argument("--lazy", action="store_true",
                   help="let the program run before its memory is in: its anonymous pages "
                        "come on first touch and in the background from the restarter, "
                        "which stays as its parent until they are all in (a process or a "
                        "tree; docs/kmod.md, Lazy restart)")
    p.add_argument("--device", metavar="DEV", default=kernel.DEVICE,
                   help="the crfs device (default %(default)s)")
    p.set_defaults(func=restart, reporter="crfs restart")
    return p
