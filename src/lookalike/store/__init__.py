"""Files on disk: atomic writes and folder locks, the saved-model format, streamed result files, the one safe move and the trash.

The names below are this package's public surface (the fronts import them from here, never from its modules),
each imported on first use: asking whether a folder holds a saved model loads no table library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.store.files import atomic_path, locked, open_regular, write_text_atomic
    from lookalike.store.results import (
        STREAM_SUFFIXES,
        TABLE_SUFFIXES,
        check_output,
        count_rows,
        json_records,
        write_table,
    )
    from lookalike.store.safemove import move_file
    from lookalike.store.storage import is_saved_model, verify

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "files": ["atomic_path", "locked", "open_regular", "write_text_atomic"],
        "results": ["STREAM_SUFFIXES", "TABLE_SUFFIXES", "check_output", "count_rows", "json_records", "write_table"],
        "safemove": ["move_file"],
        "storage": ["is_saved_model", "verify"],
    },
)
