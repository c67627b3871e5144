"""restart/: a drop box. An image copied in is verified on close and handed to the kernel.

The upload is written to a temporary file in the store (not memory). close(2) reports the
outcome: it fails when the image is unsound or cannot be restarted, and
restart/<name>.status says why. When the kernel module restored it, close(2) succeeds and the
program runs on: restart/<name>.status gives its pid and state (running, exited N, killed by
SIG...), restart/<name>.log what it writes to an fd 0-2 the kernel could not reopen (a
terminal, a socket, a pipe to outside; its files are reopened). A thread per restored program waits for
it, so the daemon goes on serving meanwhile.

With the mount option `lazy` the daemon restarts with `crfs-restart --lazy`: close(2)
returns once the program runs, before its anonymous memory is in (it comes on first touch
and in the background, docs/kmod.md "Lazy restart"); restart/<name>.status says `memory:
coming in (lazy)`, then `memory: resident` once every page is in, or `memory: page server
failed: ...` (the program is then killed).
"""

import errno
import logging
import os
import secrets
import stat
import threading
import time

from crfs import kernel
from crfs.formats import ckpt
from crfs.formats.source import Source
from crfs.errors import FsError
from crfs.fs.access import Owner, User, denied
from crfs.fs.nodes import Dir, File
from crfs.model import chain, registry
from crfs.model.verify import verify
from crfs.store_paths import TEMP_PREFIX

log = logging.getLogger("crfs")

MODULE_HELP = ("the crfs kernel module is not loaded: build and load it with "
               "`make -C kmod && insmod kmod/crfs.ko` (it provides /dev/crfs)")


class Upload(File):
    """An image being copied into restart/: bytes go to a temp file in the store.

    It belongs to its writer: only the uid that created it may open, write, truncate or
    close it (root included: whoever closes it submits it), and its attributes show that
    uid and gid."""

    mode = stat.S_IFREG | 0o600
    writable = True
    live = True
    direct_io = True

    def __init__(self, box, name, path, uid, gid):
        super().__init__(("restart", name), time.time_ns())
        self.box = box
        self.name = name
        self.path = path
        self.owner = User(uid, gid)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._size = 0
        self._dirty = True
        self._outcome = None   # FsError of the last close, or None for success

    def authorize(self, uid):
        if uid != self.owner.uid:
            raise denied(f"restart/{self.name}: another user's upload")

    def size(self):
        return self._size

    def read(self, offset, size):
        return os.pread(self.fd, size, offset)

    def write(self, offset, data):
        written = os.pwrite(self.fd, data, offset)
        self._size = max(self._size, offset + written)
        self._dirty = True
        return written

    def truncate(self, size):
        os.ftruncate(self.fd, size)
        self._size = size
        self._dirty = True

    def close(self):
        """What close(2) returns: handle the image once per batch of writes."""
        if self._dirty:
            self._outcome = self.box.submit(self)
            self._dirty = False
        if self._outcome is not None:
            raise self._outcome

    def release(self):
        os.close(self.fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.box.uploads.pop(self.name, None)


class RestartBox(Dir):
    live = True     # uploads, statuses and logs come and go

    def __init__(self, store_path, owner_uid, lazy=False):
        super().__init__(("restart",))
        self.store_path = store_path
        self.owner_uid = owner_uid
        self.lazy = lazy     # mount option lazy: crfs-restart --lazy
        self.uploads = {}
        self.statuses = {}   # name -> status text
        self.logs = {}       # name -> path of the restored program's output
        self.uploaders = {}  # name -> User who last uploaded it: owns .status and .log
        self._serial = 0
        self._lock = threading.Lock()

    def names(self):
        return sorted(list(self.uploads) + [f"{n}.status" for n in self.statuses]
                      + [f"{n}.log" for n in self.logs])

    def child(self, name):
        if name in self.uploads:
            return self.uploads[name]
        return self._report_file(name)

    def _report_file(self, name):
        """restart/<image>.status or restart/<image>.log, or None."""
        image, suffix = os.path.splitext(name)
        if suffix == ".status" and image in self.statuses:
            return LiveFile(("restart", name), lambda: self._status_of(image),
                            ReportOwner(self, image))
        if suffix == ".log" and image in self.logs:
            # The program's output is its restarter's alone.
            return LiveFile(("restart", name), lambda: self._log_of(image),
                            ReportOwner(self, image), mode=stat.S_IFREG | 0o400)
        return None

    def _status_of(self, name):
        return self.statuses.get(name, "").encode()

    def _log_of(self, name):
        """The restored program's output so far."""
        try:
            fd = os.open(self.logs[name], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (KeyError, OSError):
            return b""
        with open(fd, "rb") as f:
            return f.read()

    def authorize(self, uid):
        """Only root or the mount's owner may upload: the daemon restarts as itself."""
        if uid not in (0, self.owner_uid):
            raise FsError("only root or the mount's owner may restart", errno.EACCES)

    def create(self, name, uid, gid=None):
        """A new upload `name` by uid:gid (gid defaults to uid's own)."""
        self.authorize(uid)
        if name in self.uploads or name.endswith(".status") or name.endswith(".log"):
            raise FsError(errno=errno.EEXIST)
        self._serial += 1
        # Not guessable: nobody can plant a file or link at its name (or its log's) first.
        path = os.path.join(self.store_path, f"{TEMP_PREFIX}restart-{self._serial}-"
                                             f"{secrets.token_hex(8)}-{name}")
        upload = Upload(self, name, path, uid, uid if gid is None else gid)
        self.uploads[name] = upload
        return upload

    def submit(self, upload):
        """Verify and hand over; returns the FsError close(2) must report, or None."""
        with self._lock:
            self.uploaders[upload.name] = upload.owner
        # (FsError or None, status[, the restored program's waiter, not started])
        outcome, status, *waiter = self._restart(upload)
        with self._lock:
            self.statuses[upload.name] = status
        for thread in waiter:
            # after the status above: what it learns (the program ended, a lazy restart's
            # memory resident or its server failed) must come after it
            thread.start()
        log.info("restart/%s: %s", upload.name, status.splitlines()[-1])
        return outcome

    def _restart(self, upload):
        # One inode from here on: the upload we wrote, read through a read-only reopen of
        # our own fd, handed to the restarter as that fd. A store others may write to
        # cannot swap the file between the check and the restart.
        fd = os.open(f"/proc/self/fd/{upload.fd}", os.O_RDONLY | os.O_CLOEXEC)
        with Source(fd, os.fstat(fd).st_size, upload.path) as source:
            return self._restart_verified(upload, source)

    def _restart_verified(self, upload, source):
        report = verify(source)
        if not report.sound:
            reason = next(c for c in report.checks if not c.ok)
            return _rejected(upload.name, errno.EINVAL, f"{reason.name}: {reason.detail}")
        image = report.image
        if not registry.restartable(image):
            return _rejected(upload.name, errno.EOPNOTSUPP, _not_restartable(image))
        # Not ENOSYS: the kernel takes ENOSYS from FLUSH to mean "no flush method",
        # returns 0 to close(2) and stops sending FLUSH for the whole mount.
        if not os.path.exists(kernel.DEVICE):
            return _failed(upload.name, errno.ENODEV, MODULE_HELP)
        try:
            log_path, output = self._new_log(upload)
        except OSError as exc:
            return _failed(upload.name, exc.errno or errno.EIO,
                           f"cannot create the program's log: {exc.strerror}")
        with output:
            # the restarter's stdin is /dev/null, its stdout and stderr this log: an image's
            # fd 0-2 the kernel cannot reopen (a terminal, a socket, a pipe to a process
            # left out) gets these (CRFS_RESTART_INHERIT); its files stay its own
            outcome = _restart_flat(image, source.fd, os.path.dirname(upload.path),
                                    output, self.lazy)
        if outcome.errno == 0:
            waiter = threading.Thread(target=self._wait, args=(upload.name, outcome, log_path),
                                      name=f"restart-{outcome.pid}", daemon=True)
            return (*_kernel_outcome(upload.name, outcome), waiter)
        return _kernel_outcome(upload.name, outcome)

    def _new_log(self, upload):
        """(path, file open for writing) of a fresh output file for the program restored
        from `upload`: hidden in the store next to it, created new (never through a link,
        never truncating anything), 0600 and the uploader's. The previous one of that name
        goes."""
        name, path = upload.name, upload.path + ".log"
        output = open_private(path, upload.owner.uid, upload.owner.gid)
        with self._lock:
            old = self.logs.get(name)
            self.logs[name] = path
        if old and old != path:
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
        return path, output

    def _wait(self, name, outcome, log_path):
        """Thread: wait for the restored program (through its restarter, which ends as it
        ends; a lazy one reports first when every page is in) and record how it ended."""
        pid, process, memory = outcome.pid, outcome.process, None
        if outcome.reports is not None:
            try:
                memory = _memory(kernel.next_report(outcome.reports))
            finally:
                os.close(outcome.reports)
            log.info("restart/%s: pid %d memory: %s", name, pid, memory)
            self._set_status(name, log_path, _status(name, "running", pid=pid, memory=memory))
        process.wait()
        state = kernel.describe_exit(process.returncode)
        log.info("restart/%s: pid %d %s", name, pid, state)
        self._set_status(name, log_path, _status(name, state, pid=pid, memory=memory))

    def _set_status(self, name, log_path, status):
        with self._lock:
            if self.logs.get(name) == log_path:    # not restarted again meanwhile
                self.statuses[name] = status


def _memory(report):
    """The status's memory line after crfs-restart --lazy's second report."""
    if report is None:
        return "never resident: the program or its page server ended before every page was in"
    code, stage, reason = report
    if code == 0 and stage == "resident":
        return f"resident ({reason.partition(': ')[2] or reason})"
    return f"{reason} ({os.strerror(code) if code else stage})"


def open_private(path, uid, gid):
    """A new file at `path` for writing, 0600 and uid:gid's: O_EXCL fails on anything
    already there, a symbolic link included, so nothing is followed or truncated."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)     # whatever the umask
        if (uid, gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, uid, gid)
            except PermissionError:
                pass    # a daemon that is not root keeps it: still 0600
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "wb")


def _not_restartable(image):
    only = " or ".join(registry.restartable_descriptions())
    return f"cannot restart a {image.description} image: only {only} images can be restarted"


def _kernel_outcome(name, outcome):
    """(FsError for close(2) or None, status text) of the restarter child's Outcome."""
    code = outcome.errno
    if code == 0:
        memory = "coming in (lazy)" if outcome.reports is not None else None
        return None, _status(name, "running", pid=outcome.pid, memory=memory)
    if outcome.stage == "restarter":
        return _failed(name, errno.ENODEV, outcome.reason)
    if outcome.stage == "open-device":
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            return _failed(name, errno.ENODEV, MODULE_HELP)
        return _failed(name, code, f"cannot open {kernel.DEVICE}: {outcome.reason}")
    if outcome.stage == "version":
        return _failed(name, errno.ENODEV, f"{kernel.DEVICE}: {outcome.reason}")
    reason = _module_reason(outcome)
    if code == errno.EINVAL:
        return _rejected(name, errno.EINVAL, f"the kernel module rejected the image: {reason}")
    if code in (errno.ENOEXEC, errno.EOPNOTSUPP):
        return _rejected(name, errno.EOPNOTSUPP,
                         f"the kernel module cannot restart it: {reason}")
    return _failed(name, code, f"{os.strerror(code)}: {reason}")


def _module_reason(outcome):
    """Why the kernel module refused, with where in the image when it said."""
    where = ""
    if outcome.offset is not None:
        where = f"offset {outcome.offset:#x}: {ckpt.record_name(outcome.record_type)}: "
    return f"{where}{outcome.reason or os.strerror(outcome.errno)}"


def _rejected(name, code, why):
    """(FsError, status) of an image that will not be restarted as it is."""
    return FsError(why, code), _status(name, "rejected", why)


def _failed(name, code, why):
    """(FsError, status) of a restart that could not be done."""
    return FsError(why, code), _status(name, "failed", why)


class LiveFile(File):
    """A status or log file whose contents change while it exists: a stable key (the
    inode stays) and direct I/O, so every stat and read asks `current()` again."""

    mode = stat.S_IFREG | 0o444
    direct_io = True
    live = True

    def __init__(self, key, current, owner=None, mode=None):
        super().__init__(key, time.time_ns())
        self._current = current
        self.owner = owner
        if mode is not None:
            self.mode = mode

    def size(self):
        return len(self._current())

    def read(self, offset, size):
        return self._current()[offset:offset + size]


class ReportOwner(Owner):
    """restart/<image>.status and .log belong to whoever uploaded <image> last."""

    def __init__(self, box, image):
        self.box = box
        self.image = image

    def attributes(self, node):
        user = self.box.uploaders.get(self.image) or User(0, 0)
        return user.attributes(node)


def _status(name, state, error=None, pid=None, memory=None):
    lines = [f"image: {name}", f"state: {state}"]
    if pid:
        lines.append(f"pid: {pid}")
    if memory:
        lines.append(f"memory: {memory}")
    if pid:
        lines.append(f"stdio: the image's files and pipes; in place of a terminal, socket or "
                     f"pipe to outside, fd 0 /dev/null, fds 1 and 2 restart/{name}.log")
    if error:
        lines.append(f"error: {error}")
    return "\n".join(lines) + "\n"


def _restart_flat(image, fd, directory, output, lazy=False):
    """kernel.restart_in_child of the image open at `fd`, handed in as that fd; an
    incremental image is first written whole, with its chain's pages, to a temporary file
    of `directory` (crfs.model.chain.flatten), handed in the same way: the kernel reads one
    image, and it is done reading when restart_in_child returns (--lazy: the page server
    keeps it open until every page is in)."""
    if image.parent is None:
        return _restart_fd(fd, output, lazy)
    flat = chain.flatten(image, directory, lambda img, out: registry.dump(img, out, "ckpt"))
    try:
        flat_fd = os.open(flat, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    finally:
        os.unlink(flat)
    try:
        return _restart_fd(flat_fd, output, lazy)
    finally:
        os.close(flat_fd)


def _restart_fd(fd, output, lazy):
    """The restarter opens /proc/self/fd/FD: the very inode the daemon checked."""
    options = {"options": ("--lazy",), "keep_reports": True} if lazy else {}
    return kernel.restart_in_child(f"/proc/self/fd/{fd}", kernel.DEVICE, stdout=output,
                                   pass_fds=(fd,), **options)
