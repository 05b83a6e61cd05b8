"""What the user passed, as rows: folders, globs, lists, tables, URLs, in-memory images or vectors; decoding, the
pixel facts measured while decoding, and the report of the images that failed.

The names below are this package's public surface (the fronts import them from here, never from its modules),
each imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.ingest.decode import ImageInfo, load_rgb, probe
    from lookalike.ingest.download import DownloadSettings
    from lookalike.ingest.names import escaped, shortened
    from lookalike.ingest.options import add_download_options, download_options
    from lookalike.ingest.report import summarize_failures, write_report
    from lookalike.ingest.sources import is_embeddings_file, list_image_files, load_images, read_table

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "decode": ["ImageInfo", "load_rgb", "probe"],
        "download": ["DownloadSettings"],
        "names": ["escaped", "shortened"],
        "options": ["add_download_options", "download_options"],
        "report": ["summarize_failures", "write_report"],
        "sources": ["is_embeddings_file", "list_image_files", "load_images", "read_table"],
    },
)
