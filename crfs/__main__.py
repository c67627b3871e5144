import sys

from crfs.cli import main

sys.exit(main())
