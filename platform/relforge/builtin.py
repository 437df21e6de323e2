"""The core's built-in plugin (registered under the name ``relforge``).

It offers the components that belong to the core because more than one
method uses them: dataset readers, decoders, generic templates and losses.
Each area keeps its own registration function; this module only wires them to
the hooks, so the core's components are registered exactly as a plugin's are.
"""
from __future__ import annotations

from relforge.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from relforge.data.registration import register_datasets as _register

    _register(register)


@hookimpl
def register_decoders(register):
    from relforge.decoding.registration import register_decoders as _register

    _register(register)
