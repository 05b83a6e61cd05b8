"""Command-line options for downloading URLs, mapped onto :class:`~lookalike.ingest.download.DownloadSettings`."""

from __future__ import annotations

import argparse

from lookalike.ingest.download import DownloadSettings

_MIB = 1024 * 1024


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--concurrency``, ``--timeout``, ``--retries`` and ``--max-size`` to a sub-command.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_download_options(parser)
    >>> download_options(parser.parse_args(["--timeout", "30", "--max-size", "5"]))
    {'deadline': 30.0, 'max_bytes': 5242880}
    """
    defaults = DownloadSettings()
    group = parser.add_argument_group("downloading URLs")
    group.add_argument("--concurrency", type=int, help=f"downloads in flight (default: {defaults.concurrency})")
    group.add_argument(
        "--timeout", type=float, help=f"seconds allowed for one download, all included (default: {defaults.deadline:g})"
    )
    group.add_argument(
        "--retries",
        type=int,
        help=f"extra tries after a transient failure such as HTTP 503 (default: {defaults.retries})",
    )
    group.add_argument(
        "--max-size",
        type=float,
        metavar="MB",
        help=f"largest image to download (default: {defaults.max_bytes // _MIB})",
    )


def download_options(args: argparse.Namespace) -> dict | None:
    """The download settings given on the command line, as overrides of the defaults (None when none was given)."""
    given = {
        "concurrency": args.concurrency,
        "deadline": args.timeout,
        "retries": args.retries,
        "max_bytes": None if args.max_size is None else int(args.max_size * _MIB),
    }
    chosen = {name: value for name, value in given.items() if value is not None}
    return chosen or None
