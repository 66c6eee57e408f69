"""``python -m taskdrive`` is the ``taskdrive`` command."""

from taskdrive.cli import main

main()
