"""RelForge: a plugin-registry research platform for relation extraction.

The public API that plugins may import lives here and in the modules it names:
``relforge.hookimpl`` (the marker plugins decorate their hooks with), the
component base classes in :mod:`relforge.components`, the example schema in
:mod:`relforge.data.example`, and :func:`relforge.registry.get_registry`.
"""
from importlib.metadata import PackageNotFoundError, version as _dist_version

from relforge.hookspecs import hookimpl, hookspec

try:
    __version__ = _dist_version("relforge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["hookimpl", "hookspec", "__version__"]
