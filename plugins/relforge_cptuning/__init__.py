"""CPTuning: contrastive prompt tuning for generative relation extraction (arXiv 2501.02196).

A RelForge plugin, registered through the ``relforge`` entry-point group
exactly as a third-party plugin is. It imports only the core's public API.
Its components arrive with the plugin's own issue; until then it loads and is
listed by ``relforge plugins`` with no components.
"""

__version__ = "0.1.0"
