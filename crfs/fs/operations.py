"""pyfuse3 glue: inodes and handles in, model-backed nodes out.

pyfuse3 stops the whole filesystem on any exception other than FUSEError, so every
request goes through `_request`, the one place that turns outcomes into errnos and logs.
"""

import errno
import functools
import logging
import os
from bisect import bisect_right

import pyfuse3
import trio

from crfs.errors import CrfsError, FormatError, FsError
from crfs.fs.access import R, W, X, Caller, User, denied
from crfs.fs.nodes import Dir, NumberedDir, Symlink
from crfs.fs.store import Unindexed

log = logging.getLogger("crfs")

# The store is live: names at the top (live nodes) are looked up again on every path walk
# (one stat), so a replaced image is never reached through a stale directory. Below an
# image, nodes are keyed by the image's generation and never change.
LIVE_TTL = 0.0
TREE_TTL = 60.0
MAX_FILE_SIZE = (1 << 63) - 1    # the largest st_size


def _request(func=None, *, in_thread=False):
    """Decorate a request handler; `in_thread` runs it off the event loop (for work that
    may take seconds — verifying an upload, checkpointing — while other requests go on).

    A handler on the loop that needs an image not indexed yet raises Unindexed before it
    has changed or sent anything (an image's directory makes all its children at once,
    before readdir replies): the image is indexed in a worker thread, one at a time per
    image, while other requests are served, and the handler runs again."""
    if func is None:
        return functools.partial(_request, in_thread=in_thread)

    @functools.wraps(func)
    async def wrapper(self, *args):
        try:
            if in_thread:
                return await trio.to_thread.run_sync(func, self, *args)
            while True:
                try:
                    return func(self, *args)
                except Unindexed as pending:
                    await _index(pending.entry)
        except pyfuse3.FUSEError:
            raise
        except CrfsError as exc:
            _log_error(func.__name__, exc)
            raise pyfuse3.FUSEError(_errno_of(exc)) from None
        except OSError as exc:
            log.warning("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s%r failed", func.__name__, args[:1])
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper


async def _index(entry):
    """Index a store entry in a worker thread; concurrent requests for it wait for the one
    indexing it (the per-image lock), requests for anything else go on meanwhile."""
    if entry.async_lock is None:
        entry.async_lock = trio.Lock()
    async with entry.async_lock:
        if not entry.loaded:
            await trio.to_thread.run_sync(entry.index)


def _log_error(request, exc):
    # An FsError is an ordinary answer (ENOENT, EACCES...); anything else is worth a warning.
    level = logging.DEBUG if isinstance(exc, FsError) else logging.WARNING
    log.log(level, "%s: %s", request, exc)


def _errno_of(exc):
    # A malformed image fails the read as an I/O error; FormatError's own errno (EINVAL)
    # would blame the caller's arguments.
    return errno.EIO if isinstance(exc, FormatError) else exc.errno


class Inodes:
    """Inode numbers for node keys, with the kernel's lookup counts.

    The children of a NumberedDir (pages/) get no entry each: the directory is given a
    block of inode numbers, one per child (base + the child's number), the first time it
    is listed or a child is looked up, and a child is made again from its number whenever
    its inode is asked for. Their lookup counts need no keeping: the kernel forgets the
    directory only after all of them, and the block goes with it."""

    def __init__(self, root):
        self.by_ino = {pyfuse3.ROOT_INODE: root}
        self.by_key = {root.key: pyfuse3.ROOT_INODE}
        self.lookups = {pyfuse3.ROOT_INODE: 1}
        self._next = pyfuse3.ROOT_INODE + 1
        self._blocks = {}       # ino of a NumberedDir -> base of its children's block
        self._bases = []        # the bases, ascending (allocated in order)
        self._block_dirs = []   # the NumberedDir of each base

    def canonical(self, node):
        """(inode, node): the node already known under this key wins (it holds caches)."""
        ino = self.by_key.get(node.key)
        if ino is None:
            ino = self._next
            self._next += 1
            self.by_key[node.key] = ino
            self.by_ino[ino] = node
            self.lookups[ino] = 0
        return ino, self.by_ino[ino]

    def block(self, dir_ino, node):
        """The base of the inode block of the children of NumberedDir `node` (`dir_ino`)."""
        base = self._blocks.get(dir_ino)
        if base is None:
            base = self._blocks[dir_ino] = self._next
            self._next += max(node.count(), 1)
            self._bases.append(base)
            self._block_dirs.append(node)
        return base

    def remember(self, ino):
        if ino in self.lookups:
            self.lookups[ino] += 1

    def node(self, ino):
        node = self.by_ino.get(ino)
        if node is not None:
            return node
        b = bisect_right(self._bases, ino) - 1
        if b >= 0 and ino - self._bases[b] < self._block_dirs[b].count():
            return self._block_dirs[b].child_at(ino - self._bases[b])
        raise FsError(errno=errno.ESTALE)

    def forget(self, ino, count):
        if ino == pyfuse3.ROOT_INODE or ino not in self.lookups:
            return
        self.lookups[ino] -= count
        if self.lookups[ino] <= 0:
            node = self.by_ino.pop(ino)
            self.by_key.pop(node.key, None)
            del self.lookups[ino]
            base = self._blocks.pop(ino, None)
            if base is not None:
                b = self._bases.index(base)
                del self._bases[b], self._block_dirs[b]


class Listing:
    """An open directory's names, taken when its listing starts (opendir, rewinddir).

    readdir offsets index this snapshot, not the live directory: the offset handed back
    with a name always resumes right after that name, though images appear and vanish
    in the store meanwhile. Later changes show when the listing starts again.
    """

    def __init__(self, ino, node):
        self.ino = ino
        self.node = node
        self.names = None

    def rewind(self):
        self.node.refresh()
        self.names = self.node.names()    # a Sequence: lazy for pages/, so this is cheap

    def entries_from(self, offset):
        """(offset of the next entry, name, node or None) for each name from `offset` on.
        A directory that can walk its children in order (pages/) streams them."""
        if self.names is None:      # a seekdir before any readdir: list what is known
            self.names = self.node.names()
        children = self.node.children_from(self.names, offset)
        for index, (name, child) in enumerate(children, offset + 1):
            yield index, name, child


class Handle:
    """An open file: the node, and the uid that opened it (whose writes and close these are)."""

    def __init__(self, node, uid):
        self.node = node
        self.uid = uid


def _caller(ctx):
    return Caller(ctx.uid, ctx.gid, ctx.pid)


def _open_mask(flags):
    access = flags & os.O_ACCMODE
    return {os.O_RDONLY: R, os.O_WRONLY: W}.get(access, R | W)


class Operations(pyfuse3.Operations):
    def __init__(self, root, restart_box):
        super().__init__()
        self.root = root
        self.box = restart_box
        root.store.defer_indexing()    # this thread runs the event loop: index in workers
        self.inodes = Inodes(root)
        self.handles = {}       # fh -> Handle of an open file
        self.listings = {}      # fh -> Listing of an open directory
        self._next_fh = 1
        self.uid, self.gid = os.getuid(), os.getgid()
        self.daemon = User(self.uid, self.gid)     # owner of the nodes that have none

    # --- permissions (crfs.fs.access) --------------------------------------------------

    def _owner(self, node):
        return node.owner or self.daemon

    def _check(self, node, ctx, mask, what):
        """EACCES unless the caller of `ctx` may `mask` (R|W|X) `node`."""
        if not self._owner(node).permits(_caller(ctx), node, mask):
            raise denied(what)

    # --- attributes -------------------------------------------------------------------

    def _attrs(self, ino, node):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ino
        attr.st_uid, attr.st_gid, attr.st_mode = self._owner(node).attributes(node)
        attr.st_nlink = 2 if isinstance(node, Dir) else 1
        # A file size is an off_t: x86_64 VMAs may end near 2^64 (gcore's [vsyscall] page
        # makes mem that long), past what st_size holds and any offset read can reach.
        size = min(node.size(), MAX_FILE_SIZE)
        attr.st_size = size
        attr.st_blksize = 4096
        attr.st_blocks = (size + 511) // 512
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = node.mtime_ns
        ttl = LIVE_TTL if node.live or node.writable else TREE_TTL
        attr.entry_timeout = attr.attr_timeout = ttl
        return attr

    def _entry(self, child):
        ino, node = self.inodes.canonical(child)
        return ino, node, self._attrs(ino, node)

    # --- lookups and directories ------------------------------------------------------

    @_request
    def lookup(self, parent_inode, name, ctx=None):
        parent = self.inodes.node(parent_inode)
        if not isinstance(parent, Dir):
            raise FsError(errno=errno.ENOTDIR)
        if ctx is not None:
            self._check(parent, ctx, X, "lookup")
        if isinstance(parent, NumberedDir):
            return self._lookup_numbered(parent_inode, parent, os.fsdecode(name))
        child = parent.child(os.fsdecode(name))
        if child is None:
            raise FsError(errno=errno.ENOENT)
        ino, _, attr = self._entry(child)
        self.inodes.remember(ino)
        return attr

    def _lookup_numbered(self, parent_inode, parent, name):
        number = parent.number_of(name)
        if number is None:
            raise FsError(errno=errno.ENOENT)
        ino = self.inodes.block(parent_inode, parent) + number
        return self._attrs(ino, parent.child_at(number))

    @_request
    def getattr(self, inode, ctx=None):
        return self._attrs(inode, self.inodes.node(inode))

    @_request
    def readlink(self, inode, ctx):
        node = self.inodes.node(inode)
        if not isinstance(node, Symlink):
            raise FsError(errno=errno.EINVAL)
        return node.target

    @_request
    def opendir(self, inode, ctx):
        node = self.inodes.node(inode)
        if not isinstance(node, Dir):
            raise FsError(errno=errno.ENOTDIR)
        self._check(node, ctx, R, "opendir")
        fh = self._new_fh()
        self.listings[fh] = Listing(inode, node)
        return fh

    @_request
    def readdir(self, fh, start_id, token):
        listing = self.listings[fh]
        if isinstance(listing.node, NumberedDir):
            return self._readdir_numbered(listing, start_id, token)
        if start_id == 0:
            listing.rewind()
        for offset, name, child in listing.entries_from(start_id):
            if child is None:      # gone from the store since the listing was taken
                continue
            ino, _, attr = self._entry(child)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attr, offset):
                break
            self.inodes.remember(ino)

    def _readdir_numbered(self, listing, start_id, token):
        """A NumberedDir's children, listed from one set of attributes (they differ only by
        inode number); offsets are child numbers + 1, stable since the children never change."""
        node = listing.node
        base = self.inodes.block(listing.ino, node)
        attr = None
        reply = pyfuse3.readdir_reply
        for number, name in node.names_from(start_id):
            if attr is None:
                attr = self._attrs(base + number, node.child_at(number))
            attr.st_ino = base + number
            # os.fsencode, without its per-call checks (256k names)
            if not reply(token, name.encode("utf-8", "surrogateescape"), attr, number + 1):
                break

    @_request
    def releasedir(self, fh):
        self.listings.pop(fh, None)

    @_request
    def access(self, inode, mode, ctx):
        """access(2), and chdir (the kernel asks for X): what open, lookup and create
        would allow (the restart box is writable for those who may restart)."""
        node = self.inodes.node(inode)
        mask = mode & (R | W | X)
        if not mask:
            return True
        try:
            if node is self.box:
                if mask & W:
                    self.box.authorize(ctx.uid)
                mask &= ~W
            elif mask & W and not node.writable:
                return False
            self._check(node, ctx, mask, "access")
            if not isinstance(node, Dir):
                node.authorize(ctx.uid)
        except FsError:
            return False
        return True

    async def forget(self, inode_list):
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    # --- files ------------------------------------------------------------------------

    def _new_fh(self):
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _handle(self, node, uid):
        fh = self._new_fh()
        self.handles[fh] = Handle(node, uid)
        return pyfuse3.FileInfo(fh=fh, direct_io=node.direct_io,
                                keep_cache=not node.direct_io)

    @_request
    def open(self, inode, flags, ctx):
        node = self.inodes.node(inode)
        if isinstance(node, Dir):
            raise FsError(errno=errno.EISDIR)
        if flags & (os.O_WRONLY | os.O_RDWR) and not node.writable:
            raise FsError(errno=errno.EACCES)
        self._check(node, ctx, _open_mask(flags), "open")
        node.authorize(ctx.uid)
        return self._handle(node, ctx.uid)

    @_request
    def read(self, fh, offset, size):
        return self.handles[fh].node.read(offset, size)

    @_request
    def create(self, parent_inode, name, mode, flags, ctx):
        if self.inodes.node(parent_inode) is not self.box:
            raise FsError(errno=errno.EACCES)
        upload = self.box.create(os.fsdecode(name), ctx.uid, ctx.gid)
        ino, node, attr = self._entry(upload)
        self.inodes.remember(ino)
        return self._handle(node, ctx.uid), attr

    @_request(in_thread=True)
    def write(self, fh, offset, buf):
        handle = self.handles[fh]
        handle.node.authorize(handle.uid)
        return handle.node.write(offset, buf)

    @_request
    def setattr(self, inode, attr, fields, fh, ctx):
        node = self.inodes.node(inode)
        if not node.writable:
            raise FsError(errno=errno.EPERM)
        node.authorize(ctx.uid)
        if fields.update_size:
            node.truncate(attr.st_size)
        return self._attrs(inode, node)

    @_request(in_thread=True)
    def flush(self, fh):
        handle = self.handles[fh]
        handle.node.authorize(handle.uid)
        handle.node.close()

    @_request
    def release(self, fh):
        self.handles.pop(fh).node.release()

    @_request
    def statfs(self, ctx):
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 4096
        st.f_namemax = 255
        return st
