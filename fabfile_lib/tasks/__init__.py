"""The Invoke namespace: one collection per concern."""

import logging
import os

from invoke import Collection

from . import _exit, lab, sandbox
from ._errors import install_guard, user_errors

install_guard()
_exit.install()

if os.environ.get("INVOKE_LAB_DEBUG"):  # the library's own debug log, hop by hop (inv -d shows every library's)
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    logging.getLogger("fabfile_lib").addHandler(_handler)
    logging.getLogger("fabfile_lib").setLevel(logging.DEBUG)

__all__ = ["namespace", "user_errors"]

namespace = Collection()
namespace.add_collection(lab.ns)
namespace.add_collection(sandbox.ns)
