"""JupyterLab on an HPC compute node, reached through a jump host, driven by Fabric and Invoke."""

from ._version import __version__
from .errors import LabError

__all__ = ["LabError", "__version__", "version"]


def version() -> str:
    """The tool's version: a constant, not a lookup in the installed packages' metadata (which scans them
    all: 40 ms of every start)."""
    return __version__
