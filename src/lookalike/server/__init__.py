"""The web explorer and REST API: ``lookalike serve`` and ``model.explore()``.

Needs the ``server`` extra (``pip install 'lookalike[server]'``).
"""
