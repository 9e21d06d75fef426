"""``python -m longlink`` is the ``longlink`` command."""

from longlink.cli import main

main()
