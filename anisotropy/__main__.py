"""``python -m anisotropy``: the same command line as the ``anisotropy`` script."""

from anisotropy.cli import main

raise SystemExit(main())
