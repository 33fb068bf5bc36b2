"""deltamtl: a delta-sparse multi-task vision transformer and its ZCU104 accelerator.

One import name, one rule: ``deltamtl.<folder>.<module>`` is ``<folder>/<module>.py`` at the
repository's top level, for the folders ``contract``, ``model``, ``hls``, ``rtl`` and
``host``; everything else under ``deltamtl.`` (the ``deltamtl`` command, demo, bench) is in
``deltamtl/``. Layers, lowest first: contract -> model -> hls | rtl -> host -> the command
line; nothing imports upward (``make lint`` runs import-linter, docs/architecture.md).
"""

__version__ = "0.1.0"
