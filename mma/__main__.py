"""``python -m mma`` runs the command-line interface."""

from mma.cli import main

raise SystemExit(main())
