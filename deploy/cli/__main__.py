"""`python -m deploy.cli` runs the `vidserve` command."""

from deploy.cli.main import main

raise SystemExit(main())
