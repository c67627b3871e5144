"""Files and directories of the tree, independent of FUSE.

A node is identified by its `key` (a tuple path that includes the image generation), so
an inode number keeps meaning the same thing, and a replaced image never answers for
the old one.
"""

import errno
import stat
from collections.abc import Sequence

from crfs.errors import FsError
from crfs.formats.common import encode_text


class Node:
    mode = 0
    direct_io = False   # reads go straight to us (no page cache): for mem and control files
    writable = False
    # At the top of the mount, which follows the store and restart/ as they change: the
    # kernel must not cache the node's entry or attributes (see operations.py).
    live = False
    # Who the node belongs to (a crfs.fs.access.Owner): the uid, gid and mode it shows and
    # who may use it. None: the daemon's, with the node's own mode.
    owner = None

    def __init__(self, key, mtime_ns=0):
        self.key = key
        self.mtime_ns = mtime_ns

    def size(self):
        return 0


class Dir(Node):
    mode = stat.S_IFDIR | 0o555

    def refresh(self):
        """Bring the listing up to date; called when a listing starts from the top."""

    def names(self):
        """Child names in listing order (a Sequence; may be lazy)."""
        raise NotImplementedError

    def child(self, name):
        """The child called `name`, or None."""
        raise NotImplementedError

    def children_from(self, names, index):
        """(name, node or None) for each of `names` (a listing taken earlier) from the
        index-th on; None for a name gone since. A directory that can walk its children
        in order overrides this."""
        for i in range(index, len(names)):
            yield names[i], self.child(names[i])

    def adopt(self, node):
        """`node` as a child of this directory: it belongs to this directory's owner unless
        it has its own (an image's tree is its store file's)."""
        if node.owner is None:
            node.owner = self.owner
        return node


class StaticDir(Dir):
    """A directory whose children never change: made by `make_children` when first asked
    for, then kept."""

    def __init__(self, key, mtime_ns=0):
        super().__init__(key, mtime_ns)
        self._children = None

    def make_children(self):
        """Yield (name, node) in listing order."""
        raise NotImplementedError

    def _all(self):
        if self._children is None:
            self._children = {name: self.adopt(node) for name, node in self.make_children()}
        return self._children

    def names(self):
        return list(self._all())

    def child(self, name):
        return self._all().get(name)


class NumberedDir(Dir):
    """A directory of many alike children numbered 0..count-1 in listing order (pages/).

    A child is made from its number whenever asked for and never kept, and all children
    show the same attributes but their inode number: the fs layer numbers their inodes by
    arithmetic (one block per directory) and lists them from one set of attributes, so a
    listing of 256k children costs neither a node nor a table entry per child.
    """

    def count(self):
        raise NotImplementedError

    def number_of(self, name):
        """The number of the child called `name`, or None."""
        raise NotImplementedError

    def child_at(self, number):
        """The child numbered `number` (0 <= number < count())."""
        raise NotImplementedError

    def names_from(self, number):
        """(number, name) of each child from the number-th on, in listing order."""
        raise NotImplementedError

    def names(self):
        return LazyNames(self.count(), lambda i: next(iter(self.names_from(i)))[1])

    def child(self, name):
        number = self.number_of(name)
        return None if number is None else self.child_at(number)

    def children_from(self, names, index):
        # The children never change, so the listing taken earlier is not needed.
        for number, name in self.names_from(index):
            yield name, self.child_at(number)


class File(Node):
    """A file. The hooks below do nothing: only writable or guarded files need them."""

    mode = stat.S_IFREG | 0o444

    def authorize(self, uid):
        """Raise FsError if `uid` may not use this file beyond what its mode says (control
        files and uploads are guarded): asked on open, write, truncate and close."""

    def read(self, offset, size):
        raise NotImplementedError

    def write(self, offset, data):
        raise FsError(errno=errno.EBADF)    # open() lets only writable files be written

    def truncate(self, size):
        """Set the size (open with O_TRUNC, ftruncate)."""

    def close(self):
        """close(2) of a handle (FUSE flush): raise FsError to make close(2) fail."""

    def release(self):
        """The last handle is gone."""


class TextFile(File):
    """Content generated once, when first asked for (size included)."""

    def __init__(self, key, make, mtime_ns=0):
        super().__init__(key, mtime_ns)
        self._make = make
        self._data = None

    def data(self):
        if self._data is None:
            made = self._make()
            self._data = encode_text(made) if isinstance(made, str) else bytes(made)
        return self._data

    def size(self):
        return len(self.data())

    def read(self, offset, size):
        return self.data()[offset:offset + size]


class RangeFile(File):
    """Bytes served by a reader function over a fixed size (VMA data, a page)."""

    def __init__(self, key, size, reader, mtime_ns=0):
        super().__init__(key, mtime_ns)
        self._size = size
        self._reader = reader

    def size(self):
        return self._size

    def read(self, offset, size):
        if offset >= self._size:
            return b""
        return self._reader(offset, min(size, self._size - offset))


class Symlink(Node):
    """A symbolic link whose target is text of the image (tasks/<pid>/fd/<n>): shown, never
    followed by crfs."""

    mode = stat.S_IFLNK | 0o777

    def __init__(self, key, target, mtime_ns=0):
        super().__init__(key, mtime_ns)
        self.target = encode_text(target)

    def size(self):
        return len(self.target)


class LazyNames(Sequence):
    """A Sequence of names computed from an index on demand (e.g. 256k page names)."""

    def __init__(self, length, name_at):
        self._length = length
        self._name_at = name_at

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._name_at(i) for i in range(*index.indices(self._length))]
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._name_at(index)
