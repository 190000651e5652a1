"""Run the command-line client as `python -m client IMAGE...`."""

import sys

from client.cli import main

if __name__ == "__main__":
    sys.exit(main())
