"""Files on disk: atomic writes and folder locks, the saved-model format, streamed result files, the one safe move and the trash."""
