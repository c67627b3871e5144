"""Man pages built from the argparse definitions of crfs.cli, so they never drift.

    python3 -m crfs.manpages DIR      (or the hidden `crfs manpages DIR`)

writes DIR/man1/crfs.1, DIR/man1/crfs-<command>.1 for every subcommand and
DIR/man8/mount.crfs.8 (the mount options). .ci/setup installs them into
/usr/local/share/man.
"""

import argparse
import os
import sys

from crfs import __version__

SECTION_TITLE = {1: "crfs manual", 8: "crfs manual"}

# What each option of crfs.mount.OUR_OPTIONS does; build() fails if the two disagree.
MOUNT_OPTION_HELP = {
    "store=DIR": "The directory of images to show (default /var/lib/crfs, created if "
                 "missing). With mount -t fuse.crfs the source is the store.",
    "allow_other": "Let other users than the one mounting see the mount (FUSE's "
                   "allow_other; user_allow_other in /etc/fuse.conf for non-root).",
    "foreground": "Stay in the foreground (as -f): log to stderr.",
    "debug": "Log every request (as -d); implies foreground.",
    "log=FILE": "Where the daemon logs (default /var/log/crfs.log when daemonized, stderr "
                "in the foreground).",
    "index_dir=DIR": "Where each image's index is kept across mounts, keyed by the file's "
                     "identity (default /var/cache/crfs/index for root, "
                     "$XDG_CACHE_HOME/crfs/index otherwise), with the extractions of "
                     "compressed checkpoint archives in its archives/ (at most 8 GiB); "
                     "off: none.",
    "lazy": "restart/ restarts with crfs-restart --lazy: close(2) returns once the program "
            "runs, before its anonymous memory is in (it comes on first touch and in the "
            "background); restart/NAME.status says memory: coming in (lazy), then "
            "resident, or why the page server failed.",
}


def escape(text):
    """`text` as roff body text: backslashes and hyphens escaped, no line starting a
    request."""
    text = str(text).replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def _header(name, section, summary):
    return [f'.TH "{name.upper()}" "{section}" "" "crfs {__version__}" '
            f'"{SECTION_TITLE[section]}"',
            ".SH NAME", f"{escape(name)} \\- {escape(summary)}"]


def _synopsis(parser):
    usage = parser.format_usage().strip()
    usage = usage[len("usage: "):] if usage.startswith("usage: ") else usage
    return [".SH SYNOPSIS", escape(" ".join(usage.split()))]


def _action_lines(parser, action):
    formatter = parser._get_formatter()
    if action.option_strings:
        names = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
        if action.nargs != 0:
            names += " \\fI" + escape(formatter._format_args(
                action, action.dest.upper())) + "\\fR"
    else:
        names = f"\\fI{escape(action.metavar or action.dest)}\\fR"
    text = formatter._expand_help(action) if action.help else ""
    return [".TP", names, escape(text)]


def _actions(parser, positional):
    return [a for a in parser._actions
            if a.help is not argparse.SUPPRESS and bool(a.option_strings) != positional
            and not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]


def _arguments(parser):
    lines = []
    for title, positional in (("ARGUMENTS", True), ("OPTIONS", False)):
        actions = _actions(parser, positional)
        if actions:
            lines.append(f".SH {title}")
            for action in actions:
                lines += _action_lines(parser, action)
    return lines


def subcommands(parser):
    """{name: (subparser, one-line help)} of the subcommands `crfs --help` lists."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    return {name: (p, helps[name]) for name, p in sub.choices.items() if name in helps}


def command_page(name, parser, summary):
    lines = _header(f"crfs-{name}", 1, summary)
    lines += _synopsis(parser)
    lines += [".SH DESCRIPTION", escape(parser.description or summary)]
    lines += _arguments(parser)
    if parser.epilog:
        lines += [".SH NOTES", escape(parser.epilog)]
    lines += _exit_status(name)
    lines += [".SH SEE ALSO", "\\fBcrfs\\fR(1)" + (", \\fBmount.crfs\\fR(8)"
                                                   if name == "mount" else "")]
    return "\n".join(lines) + "\n"


EXIT_STATUS = {
    "verify": "0: the image is sound; 1: it is not, or cannot be read; 2: usage.",
    "diff": "0: the images are equal; 1: they differ; 2: an image cannot be read, or usage.",
    "restart": "0: restored (with --wait: the program's exit status, 128+N when killed by "
               "signal N); 1: refused or failed; 2: usage.",
    "doctor": "0: everything crfs needs is there; 1: something is missing; 2: usage.",
}


def _exit_status(name):
    text = EXIT_STATUS.get(name, "0: success; 1: failure (one line on stderr says why); "
                                 "2: usage.")
    return [".SH EXIT STATUS", escape(text)]


def main_page(parser):
    lines = _header("crfs", 1, "browse, checkpoint and restart process checkpoint images")
    lines += _synopsis(parser)
    lines += [".SH DESCRIPTION", escape(parser.description)]
    lines += _arguments(parser)
    lines.append(".SH COMMANDS")
    for name, (_, summary) in subcommands(parser).items():
        sentence = summary if summary.endswith(".") else summary + "."
        lines += [".TP", f"\\fBcrfs {escape(name)}\\fR", escape(sentence)
                  + f" See \\fBcrfs\\-{escape(name)}\\fR(1)."]
    lines += [".SH NOTES", escape(parser.epilog)]
    lines += [".SH SEE ALSO", ", ".join(f"\\fBcrfs\\-{escape(n)}\\fR(1)"
                                        for n in subcommands(parser))
              + ", \\fBmount.crfs\\fR(8)"]
    return "\n".join(lines) + "\n"


def mount_page(mount_parser):
    from crfs import mount
    if set(MOUNT_OPTION_HELP) != set(mount.OUR_OPTIONS):
        raise RuntimeError("crfs.manpages.MOUNT_OPTION_HELP and crfs.mount.OUR_OPTIONS "
                           "disagree")
    lines = _header("mount.crfs", 8, "mount a store of checkpoint images with FUSE")
    lines += [".SH SYNOPSIS", ".nf",
              "\\fBmount \\-t fuse crfs\\fR \\fIMOUNTPOINT\\fR [\\fB\\-o\\fR \\fIOPTIONS\\fR]",
              "\\fBmount \\-t fuse.crfs\\fR \\fISTORE\\fR \\fIMOUNTPOINT\\fR "
              "[\\fB\\-o\\fR \\fIOPTIONS\\fR]",
              escape(" ".join(mount_parser.format_usage()[len("usage: "):].split())),
              ".fi", ".SH DESCRIPTION", escape(mount_parser.description),
              escape("mount(8) runs mount.fuse(8), which runs crfs with the options; the "
                     "command returns once the mount is live, or exits 1 with one line "
                     "saying why."),
              ".SH OPTIONS"]
    for option in mount.OUR_OPTIONS:
        lines += [".TP", f"\\fB{escape(option)}\\fR", escape(MOUNT_OPTION_HELP[option])]
    lines += [".TP", "\\fIgeneric options\\fR",
              escape("Accepted (the kernel applies those that mean something): "
                     + ", ".join(sorted(mount.GENERIC_OPTIONS)) + ", x-*, comment=*.")]
    lines += [".SH FILES", ".TP", "\\fI/etc/fstab\\fR",
              escape("/srv/images  /ckpt  fuse.crfs  defaults  0 0")]
    lines += [".SH SEE ALSO", "\\fBcrfs\\fR(1), \\fBcrfs\\-mount\\fR(1), \\fBmount.fuse\\fR(8), "
              "\\fBfusermount3\\fR(1)"]
    return "\n".join(lines) + "\n"


def pages(parser=None):
    """{relative path: roff text} of every page."""
    from crfs import cli
    parser = parser or cli.build_parser()
    out = {"man1/crfs.1": main_page(parser)}
    commands = subcommands(parser)
    for name, (sub, summary) in commands.items():
        out[f"man1/crfs-{name}.1"] = command_page(name, sub, summary)
    out["man8/mount.crfs.8"] = mount_page(commands["mount"][0])
    return out


def write(directory):
    written = []
    for relative, text in pages().items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as out:
            out.write(text)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m crfs.manpages",
                                     description="write crfs's man pages under DIR")
    parser.add_argument("directory", metavar="DIR")
    args = parser.parse_args(argv)
    for path in write(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
