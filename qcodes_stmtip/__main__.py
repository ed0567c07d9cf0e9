"""``python -m qcodes_stmtip`` is the same as ``stmtip``."""

from qcodes_stmtip.cli import main

raise SystemExit(main())
