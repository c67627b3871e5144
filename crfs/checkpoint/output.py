"""The image file written by a second thread, so that reading the stopped process (the
writer's thread, in process_vm_readv) and writing the image (here, in write(2)) overlap.
Both calls release the GIL. At most QUEUE_ITEMS writes (about that many MiB) wait at once.
"""

import queue
import threading

QUEUE_ITEMS = 16


class BackgroundWriter:
    """A binary file's write() handed to a thread; close() waits and reports its error.
    The buffers given to write() must not change afterwards (the page sources return a
    fresh buffer for every read)."""

    def __init__(self, file):
        self.file = file
        self.error = None
        self._queue = queue.Queue(QUEUE_ITEMS)
        self._thread = threading.Thread(target=self._run, name="crfs-image-writer",
                                        daemon=True)
        self._thread.start()

    def write(self, data):
        if self.error is not None:
            raise self.error
        self._queue.put(data)
        return len(data)

    def _run(self):
        while (data := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.file.write(data)
                except OSError as exc:     # reported by the next write() or close()
                    self.error = exc

    def close(self, check=True):
        """Wait for every queued write and close the file; with `check`, raise the first
        error writing met (without, when giving up on a failed image anyway)."""
        self._queue.put(None)
        self._thread.join()
        self.file.close()
        if check and self.error is not None:
            raise self.error
