"""Pixels to vectors: the network registry, the built-in and zoo networks, preprocessing and the extractor.

Importing any module of this package imports the zoo too, which adds its
entries to the registry with ``register()``: the registry itself knows
nothing of the zoo, so the two do not import each other.
"""

from lookalike.embed import registry, zoo  # noqa: F401
