import sys

from crfs.cli import console

sys.exit(console())
