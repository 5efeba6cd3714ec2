"""`python -m judgekit.train rft|sft|grpo|meta ...` until the main CLI registers `judgekit train`."""

from __future__ import annotations

import sys

from judgekit.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
