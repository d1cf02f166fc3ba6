"""The one place the package version is written (read by setup.cfg and ``--version``)."""

__version__ = "0.1.0"
