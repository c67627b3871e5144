"""The top of the mount: README, restart/, and one directory per image in the store."""

from crfs.fs.image_tree import image_dir
from crfs.fs.nodes import Dir, TextFile

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
      mm/info  mm/maps  mm/vmas/<start>-<end>/{{info,data}}
      pages/<vaddr>      each dumped page, 4096 bytes
      mem                like /proc/<pid>/mem: read at offset = virtual address

  restart/               copy an image here to restart it; restart/<name>.status says
                         what happened (close fails if the image cannot be restarted)

Images added to, replaced in or removed from the store show up here without a remount.
Use ls, cat, grep, xxd, dd on it; nothing here can be modified.
"""


class RootDir(Dir):
    mode = Dir.mode

    def __init__(self, store, restart_box):
        super().__init__(("/",))
        self.store = store
        self.box = restart_box
        self.readme = TextFile(("README",), lambda: README.format(store=store.path))
        self._image_dirs = {}
        store.reserved.update({"README", "restart"})

    def refresh(self):
        self.store.refresh()

    def names(self):
        return ["README", "restart"] + self.store.names()

    def child(self, name):
        if name == "README":
            return self.readme
        if name == "restart":
            return self.box
        entry = self.store.entry(name)
        if entry is None:
            return None
        key = (name, entry.generation)
        node = self._image_dirs.get(key)
        if node is None:
            for old in [k for k in self._image_dirs if k[0] == name]:
                del self._image_dirs[old]
            node = self._image_dirs[key] = image_dir(entry)
        return node
