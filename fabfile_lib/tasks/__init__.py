"""The Invoke namespace: one collection per concern."""

from invoke import Collection

from . import lab, sandbox
from ._errors import install_guard, user_errors

install_guard()

__all__ = ["namespace", "user_errors"]

namespace = Collection()
namespace.add_collection(lab.ns)
namespace.add_collection(sandbox.ns)
