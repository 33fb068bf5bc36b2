"""``python -m deltamtl <command>`` is the ``deltamtl`` command (for ``torchrun -m deltamtl``)."""

from deltamtl.cli import main

raise SystemExit(main())
