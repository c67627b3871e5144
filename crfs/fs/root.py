"""The top of the mount: README, restart/, and one directory per image in the store."""

import errno
import logging
import stat

from crfs.checkpoint import CheckpointError, checkpoint_into_store
from crfs.errors import FsError
from crfs.fs.image_tree import ImageDir
from crfs.fs.store import StoreOwner
from crfs.fs.nodes import Dir, File, TextFile

log = logging.getLogger("crfs")

README = """\
crfs: process checkpoint images as files

Each directory here is one image file of the store ({store}), named as the file.

  <image>/format         one line: format, dialect, arch
  <image>/header         the image header, "key: value"
  <image>/verify         integrity report (as `crfs verify`)
  <image>/records        every record: offset, C type name, length (as `crfs records`)
  <image>/error          only for an image that cannot be read: why, and where
  <image>/tasks/<pid>/   every task (threads too), by its pid in the image
      comm  status  regs  fpu
      fd/<n>             symlinks to what /proc/<pid>/fd/<n> showed when checkpointed
      fdinfo/<n>         like /proc/<pid>/fdinfo/<n>: pos, flags
      oom_score_adj      like /proc/<pid>/oom_score_adj; rseq: its rseq registration;
      personality        like /proc/<pid>/personality; sched: policy, rt_priority, nice,
                         a process's exit_signal and child_subreaper (status: THP_enabled);
      timers             like /proc/<pid>/timers, with each timer's value and interval;
      exit               (a zombie) how it ended: exited N or killed SIGNAME
      mm/info  mm/maps  mm/layout.svg  mm/vmas/<start>-<end>/{{info,data}}
      pages/<vaddr>      each dumped page, 4096 bytes
      mem                like /proc/<pid>/mem: read at offset = virtual address

  restart/               copy an image here to restart it; restart/<name>.status says
                         what happened (close fails if the image cannot be restarted)
  checkpoint             write a pid here (echo PID > checkpoint) to checkpoint that live
                         process into the store; write(2) fails if it cannot be done

Images added to, replaced in or removed from the store show up here without a remount.
Use ls, cat, grep, xxd, dd on it; nothing here can be modified.
"""


class CheckpointControl(File):
    """checkpoint: a write-only control file. Each write holds one pid; that process is
    checkpointed into the store (it appears there once complete) before write(2) returns,
    and write(2) fails with the reason's errno (the log says why) when it cannot be.
    (`echo PID > checkpoint` opens with O_TRUNC: File's no-op truncate is what it needs.)"""

    mode = stat.S_IFREG | 0o200
    writable = True
    live = True
    direct_io = True

    def __init__(self, store_path, owner_uid):
        super().__init__(("checkpoint",))
        self.store_path = store_path
        self.owner_uid = owner_uid

    def authorize(self, uid):
        # The daemon may trace what its user may trace: others must not borrow that.
        if uid not in (0, self.owner_uid):
            raise FsError("only root or the mount's owner may checkpoint", errno.EACCES)

    def read(self, offset, size):
        raise FsError(errno=errno.EBADF)

    def write(self, offset, data):
        text = bytes(data).decode("ascii", "replace").strip()
        if not text.isdigit():
            log.warning("checkpoint: %r is not a pid", text[:40])
            raise FsError(errno=errno.EINVAL)
        pid = int(text)
        try:
            path = checkpoint_into_store(pid, self.store_path)
        except CheckpointError as exc:
            log.warning("checkpoint %d: %s", pid, exc)
            raise FsError(str(exc), exc.errno) from None
        log.info("checkpoint %d: %s", pid, path.name)
        return len(data)


class RootDir(Dir):
    live = True

    def __init__(self, store, restart_box):
        super().__init__(("/",))
        self.store = store
        self.owner = StoreOwner(store)     # listing it is listing the store
        self.box = restart_box
        self.readme = TextFile(("README",), lambda: README.format(store=store.path))
        self.readme.live = True     # a name at the top, looked up afresh like the images
        self.control = CheckpointControl(store.path, restart_box.owner_uid)
        # Listed first, in this order; a store file of one of these names stays hidden.
        self._fixed = {"README": self.readme, "restart": restart_box,
                       "checkpoint": self.control}
        store.reserved.update(self._fixed)
        self._image_dirs = {}    # (name, generation) -> ImageDir

    def refresh(self):
        self.store.refresh()

    def names(self):
        return list(self._fixed) + self.store.names()

    def child(self, name):
        if name in self._fixed:
            return self._fixed[name]
        entry = self.store.entry(name)
        if entry is None:
            return None
        return self._image_dir(entry)

    def _image_dir(self, entry):
        """The one ImageDir of this generation of the entry (it holds the caches); an
        older generation's goes."""
        key = (entry.name, entry.generation)
        node = self._image_dirs.get(key)
        if node is None:
            for old in [k for k in self._image_dirs if k[0] == entry.name]:
                del self._image_dirs[old]
            node = self._image_dirs[key] = ImageDir(entry)
        return node
