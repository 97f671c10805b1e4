"""`python -m local_mode`: SageMaker's jobs and endpoint on this machine (see local_mode/cli.py)."""

import sys

from local_mode.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
