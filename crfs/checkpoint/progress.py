"""Progress on stderr for long checkpoints, only on a terminal and only after a second: a
percentage, or, where the total is not known (total 0: the module writes), the MiB written
and the rate."""

import sys
import time

DELAY = 1.0        # seconds before the first report: short checkpoints stay quiet
INTERVAL = 0.2     # seconds between reports


class TerminalProgress:
    """progress(done, total) callback for checkpoint(); finish() ends the line."""

    def __init__(self, label, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done, total):
        now = time.monotonic()
        if not self.enabled or now - self.started < DELAY or now - self.last < INTERVAL:
            return
        self.last = now
        self.shown = True
        if total:
            self.stream.write(f"\r{self.label}: {100 * done // total}% of {total >> 20} MiB")
        else:
            rate = (done >> 20) / (now - self.started)
            self.stream.write(f"\r{self.label}: {done >> 20} MiB written, {rate:.0f} MiB/s")
        self.stream.flush()

    def finish(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
