"""``python -m engine.cli``: the same as the ``jobengine`` command."""

from engine.cli.main import main

main()
