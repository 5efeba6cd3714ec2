"""`python -m judgekit.bench list|run|report ...`."""

import sys

from judgekit.bench.cli import main

sys.exit(main())
