"""Who may do what through the mount (docs/security.md).

The mount runs without the kernel's `default_permissions`: the daemon itself checks every
lookup, opendir, open and access against the owner and mode each node shows, as the
kernel's generic_permission() would (root may read, write and search anything). A node's
`owner` says what it shows and who may use it: the daemon (None), the writer of an upload,
or the store file an image tree is read from (crfs.fs.store), checked live.
"""

import errno
import os

from crfs.errors import FsError

R, W, X = os.R_OK, os.W_OK, os.X_OK


class Caller:
    """The process behind a request: uid, gid, and (read when needed) its groups."""

    def __init__(self, uid, gid, pid=0):
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self._groups = None

    def groups(self):
        """Supplementary groups, from /proc/<pid>/status (as libfuse's fuse_getgroups)."""
        if self._groups is None:
            self._groups = frozenset()
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("Groups:"):
                            self._groups = frozenset(int(g) for g in line.split()[1:])
                            break
            except (OSError, ValueError):
                pass
        return self._groups


def permitted(caller, uid, gid, mode, mask):
    """Does `mode` (owned by uid:gid) grant `caller` every bit of `mask` (R|W|X)? The one
    class that fits the caller decides (owner, else group, else others); root passes."""
    if caller.uid == 0:
        return True
    if caller.uid == uid:
        bits = mode >> 6
    elif caller.gid == gid or gid in caller.groups():
        bits = mode >> 3
    else:
        bits = mode
    return bits & mask == mask


def denied(what):
    return FsError(f"{what}: permission denied", errno.EACCES)


class Owner:
    """Whose a node is: the uid, gid and mode it shows, and who may use it."""

    def attributes(self, node):
        """(uid, gid, st_mode) of `node`."""
        raise NotImplementedError

    def permits(self, caller, node, mask):
        uid, gid, mode = self.attributes(node)
        return permitted(caller, uid, gid, mode, mask)


class User(Owner):
    """A fixed uid and gid; the node's own mode (the daemon's nodes, a writer's uploads)."""

    def __init__(self, uid, gid):
        self.uid = uid
        self.gid = gid

    def attributes(self, node):
        return self.uid, self.gid, node.mode
