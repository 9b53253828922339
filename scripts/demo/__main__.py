"""``python -m scripts.demo`` (``make demo``): see ``scripts.demo.cli``."""

import sys

from scripts.demo import cli

if __name__ == "__main__":
    sys.exit(cli.main())
