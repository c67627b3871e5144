"""`crfs mount [STORE] MOUNTPOINT [-o OPTIONS]`: mount a store (as mount.fuse runs us).

`mount -t fuse crfs /ckpt -o store=DIR` runs `crfs /ckpt -o rw,…,store=DIR`;
`mount -t fuse.crfs DIR /ckpt` runs `crfs DIR /ckpt -o rw,…`: the word `mount` is left out,
and crfs.cli puts it back. Once the mount is live the command daemonizes and exits 0; if
mounting fails it raises MountError, which the CLI prints as one line (exit 1).
"""

import logging
import os
import sys
import time

from crfs.errors import MountError
from crfs.store_paths import DEFAULT_STORE

# Generic mount(8) options: accepted, and either meaningless for us or applied by the kernel.
GENERIC_OPTIONS = {
    "rw", "ro", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
    "relatime", "norelatime", "strictatime", "diratime", "nodiratime", "sync", "async",
    "auto", "noauto", "user", "nouser", "users", "owner", "group", "defaults", "_netdev",
    "nofail", "lazytime", "nolazytime", "silent", "loud", "dirsync", "mand", "nomand",
}
OUR_OPTIONS = ("store=DIR", "allow_other", "foreground", "debug", "log=FILE", "index_dir=DIR",
               "lazy")
HELP = "mount a store of images at MOUNTPOINT (the word `mount` may be left out)"
EPILOG = (f"Options (-o, comma separated): store=DIR (default {DEFAULT_STORE}, created if "
          "missing), allow_other, foreground, debug, log=FILE, index_dir=DIR (where "
          "image indexes are kept across mounts; default /var/cache/crfs/index for root, "
          "$XDG_CACHE_HOME/crfs/index otherwise; `off`: none), lazy (restart/ restarts "
          "with crfs-restart --lazy: the program runs before its memory is in); "
          "generic mount options "
          "(rw, ro, nodev, nosuid, noexec, noatime, …) are accepted. "
          "Unmount with `umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`.")


def add_parser(subparsers):
    """The `mount` subcommand's arguments (mount.fuse's calling convention)."""
    p = subparsers.add_parser("mount", help=HELP, description=HELP + ".", epilog=EPILOG)
    p.add_argument("store", metavar="STORE", nargs="?",
                   help="the directory of images (or -o store=DIR)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory")
    p.add_argument("-o", dest="options", action="append", default=[],
                   metavar="OPTIONS", help="mount options, comma separated")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (log to stderr)")
    p.add_argument("-d", "--debug", action="store_true",
                   help="log every request (implies -f)")
    p.set_defaults(func=mount_store)
    return p


def settings(args):
    """Turn arguments and -o options into one dict; MountError for unknown options."""
    conf = {"store": args.store, "mountpoint": args.mountpoint, "allow_other": False,
            "foreground": args.foreground or args.debug, "debug": args.debug, "log": None,
            "ro": False, "index_dir": None, "lazy": False}
    for option in ",".join(args.options).split(","):
        name, _, value = option.partition("=")
        if not option:
            continue
        if name in ("store", "log", "index_dir"):
            if not value:
                raise MountError(f"option {name}= needs a value")
            conf[name] = value
        elif name in ("allow_other", "foreground", "debug", "lazy"):
            conf[name] = True
        elif name in GENERIC_OPTIONS or name.startswith("x-") or name.startswith("comment="):
            conf["ro"] = conf["ro"] or name == "ro"
        else:
            raise MountError(f"unknown mount option {option!r} "
                             f"(crfs takes {', '.join(OUR_OPTIONS)})")
    conf["foreground"] = conf["foreground"] or conf["debug"]
    conf["store"] = os.path.abspath(conf["store"] or DEFAULT_STORE)
    conf["mountpoint"] = os.path.abspath(conf["mountpoint"])
    if conf["index_dir"] not in (None, "off"):
        conf["index_dir"] = os.path.abspath(conf["index_dir"])
    if conf["log"] is None and not conf["foreground"]:
        conf["log"] = default_log_path()
    return conf


def default_log_path():
    if os.access("/var/log", os.W_OK):
        return "/var/log/crfs.log"
    return os.path.join(os.path.expanduser("~"), ".crfs.log")


def check(conf):
    mountpoint, store = conf["mountpoint"], conf["store"]
    if not os.path.isdir(mountpoint):
        raise MountError(f"mount point {mountpoint} does not exist or is not a directory")
    if is_mounted(mountpoint):
        raise MountError(f"{mountpoint} is already mounted")
    try:
        os.makedirs(store, exist_ok=True)
    except OSError as exc:
        raise MountError(f"store {store}: cannot create it: {exc.strerror}") from exc
    if not os.path.isdir(store) or not os.access(store, os.R_OK | os.X_OK):
        raise MountError(f"store {store} is not a readable directory")


def is_mounted(path):
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point == path:
                return True
    return False


def setup_logging(conf):
    handler = (logging.StreamHandler(sys.stderr) if conf["log"] is None
               else logging.FileHandler(conf["log"]))
    handler.setFormatter(logging.Formatter("%(asctime)s crfs[%(process)d] %(levelname)s "
                                           "%(message)s"))
    log = logging.getLogger("crfs")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if conf["debug"] else logging.INFO)
    return log


def fuse_options(conf):
    import pyfuse3
    options = set(pyfuse3.default_options)
    # The daemon checks access itself, against the store as it is now (crfs/fs/access.py,
    # docs/security.md): the kernel's check would use attributes it caches.
    options.discard("default_permissions")
    options |= {"fsname=" + conf["store"], "subtype=crfs"}
    if conf["allow_other"]:
        options.add("allow_other")
    if conf["ro"]:
        options.add("ro")
    if conf["debug"]:
        options.add("debug")
    return options


def index_cache(conf):
    """The persistent index (crfs.fs.index_cache), or None: `index_dir=off`, or the
    default directory cannot be used (logged). An index_dir given that cannot be used
    safely fails the mount."""
    from crfs.fs.index_cache import CacheUnusable, IndexCache, default_dir

    path = conf.get("index_dir")
    if path == "off":
        return None
    try:
        return IndexCache(path or default_dir())
    except CacheUnusable as exc:
        if path:
            raise MountError(str(exc)) from None
        logging.getLogger("crfs").warning("%s: images are indexed at every mount", exc)
        return None


def build_operations(conf):
    from crfs.fs.operations import Operations
    from crfs.fs.restart import RestartBox
    from crfs.fs.root import RootDir
    from crfs.fs.store import Store

    store = Store(conf["store"], index_cache=index_cache(conf))
    box = RestartBox(conf["store"], os.getuid(), lazy=conf["lazy"])
    root = RootDir(store, box)
    now = time.time_ns()
    for node in (root, root.readme, box):
        node.mtime_ns = now
    return Operations(root, box)


def daemonize():
    """Fork; the parent waits until the child is ready, then exits 0."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        ok = os.read(read_end, 1) == b"1"
        os._exit(0 if ok else 1)
    os.close(read_end)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    return write_end


def serve(conf):
    import pyfuse3
    import trio

    ops = build_operations(conf)
    log = logging.getLogger("crfs")
    try:
        pyfuse3.init(ops, conf["mountpoint"], fuse_options(conf))
    except RuntimeError as exc:
        raise MountError(f"cannot mount {conf['mountpoint']}: {exc}") from exc
    ready = None if conf["foreground"] else daemonize()
    log.info("serving %s at %s", conf["store"], conf["mountpoint"])
    if ready is not None:
        os.write(ready, b"1")
        os.close(ready)
    try:
        trio.run(pyfuse3.main)
    except BaseException:
        log.exception("filesystem loop failed")
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=False)
    log.info("unmounted %s", conf["mountpoint"])


def mount_store(args):
    """Mount as the parsed `args` say; MountError when it cannot."""
    conf = settings(args)
    check(conf)
    setup_logging(conf)
    serve(conf)
    return 0
