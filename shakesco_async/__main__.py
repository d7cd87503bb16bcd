"""``python -m shakesco_async`` runs the command line (``demo`` when no command is given)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["demo"]))
