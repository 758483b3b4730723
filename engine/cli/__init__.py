"""The ``jobengine`` command line (``engine.cli:main`` is the console script)."""

from engine.cli.main import main

__all__ = ["main"]
