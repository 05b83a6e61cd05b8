"""Seeing a collection: the 2-D map and notebook display."""
