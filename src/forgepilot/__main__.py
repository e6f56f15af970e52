"""``python -m forgepilot`` runs the CLI."""

import sys

from forgepilot.cli import main

sys.exit(main())
