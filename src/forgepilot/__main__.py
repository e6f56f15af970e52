"""``python -m forgepilot`` runs the CLI."""

import sys

from forgepilot.cli import main

# Guarded: worker processes (forkserver/spawn) import the main module again and must not run the CLI.
if __name__ == "__main__":
    sys.exit(main())
