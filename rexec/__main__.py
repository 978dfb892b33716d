"""``python -m rexec``: the same as the ``rexec`` command."""

from rexec.cli import main

main()
