"""Entry point of `python -m ops`: wires the command line to `ops.cli.main`."""

from ops.cli import main

raise SystemExit(main())
