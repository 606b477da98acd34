"""``python -m convlog`` runs the command line."""

from convlog.cli import main

raise SystemExit(main())
