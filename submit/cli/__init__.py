"""The ``smartcache`` command line: the group (:mod:`.group`) and one module a family of commands --
:mod:`.generate`, :mod:`.reduce`, :mod:`.runs` (submit, status, resume, cancel), :mod:`.model` (train, score,
push), :mod:`.simulate`, :mod:`.serve`, :mod:`.site`, :mod:`.pool`. Each module's ``commands`` are added to
the group; each command turns user errors into one line (``Error: ...``) and a non-zero exit.
"""

from smartcache.submit.cli.group import cli, main

__all__ = ["cli", "main"]
