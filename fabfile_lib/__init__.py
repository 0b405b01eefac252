"""JupyterLab on an HPC compute node, reached through a jump host, driven by Fabric and Invoke."""

from functools import lru_cache

from .errors import LabError

__all__ = ["LabError", "__version__", "version"]


@lru_cache(maxsize=1)
def version() -> str:
    """The installed version (looked up once, when first needed: the lookup scans every installed package)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("fabfile-lab")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(name)
