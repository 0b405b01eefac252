"""The Invoke namespace: one collection per concern."""

from invoke import Collection

from . import sandbox

namespace = Collection()
namespace.add_collection(sandbox.ns)
