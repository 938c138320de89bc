"""The tool's version (one place: the package, the CLI's --version and the reports read it)."""

__version__ = "0.1.0"
