"""JupyterLab on an HPC compute node, reached through a jump host, driven by Fabric and Invoke."""

from importlib.metadata import PackageNotFoundError, version

from .errors import LabError

try:
    __version__ = version("fabfile-lab")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["LabError", "__version__"]
