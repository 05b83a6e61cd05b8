"""The ``lookalike`` command: a thin shell over the Python API.

User errors (a :class:`~lookalike.errors.LookalikeError`, or an ``OSError``
about the user's files: a path that does not exist or cannot be opened, a
full disk, a file size limit) print one line and exit 1; ``--debug`` shows
the traceback instead. A command whose optional dependency is missing says
which ``pip install`` adds it, in one line. Warnings print one line each. A
reader that stops early (``lookalike query ... | head -1``) ends the command
quietly. Any other exception is a bug in lookalike: it prints its traceback
and asks for a report, and also exits 1.

Start-up is kept short: heavy libraries (pandas, pyarrow, faiss, ONNX
Runtime, OpenCV...) are imported by the commands that use them, and only
the arguments of the command being run are defined, so ``lookalike --help``
and ``lookalike info`` import none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lookalike as lk
from lookalike.errors import InvalidArgument, LookalikeError, missing_extra, os_error_line

if TYPE_CHECKING:
    import pandas as pd

DESCRIPTOR_HELP = "'gem' (the default), 'plain', 'fast', 'best' or a JSON object of options (see docs/quality.md)"
#: OS errors about the paths a user named (a missing query image, an output folder that exists...).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
#: The library's argument names and the options that set them, for errors in the words of the command line.
_OPTIONS = {
    "threshold": "--threshold",
    "radius": "--radius",
    "k": "-k",
    "keep": "--keep",
    "metric": "--metric",
    "act_on": "--act-on",
    "keep_in": "--keep-in",
    "batch_size": "--batch-size",
    "shortlist": "--shortlist",
    "min_inliers": "--min-inliers",
    "precision": "--precision",
    "descriptor": "--descriptor",
}
#: Examples of unmatched images a --one-to-one match prints (-o and --all list them all).
UNMATCHED_SHOWN = 5


def in_cli_words(message: str) -> str:
    """A library message about an argument, naming the option instead (``k must be ...`` -> ``-k must be ...``).

    >>> in_cli_words("match needs threshold= (the largest distance of a pair) and/or k= (nearest b images per a)")
    'match needs --threshold (the largest distance of a pair) and/or -k (nearest b images per a)'
    """
    for name, option in _OPTIONS.items():
        message = re.sub(rf"(?<![\w.-]){name}=(?=[ (]|$)", option, message)
        message = re.sub(rf"(?<![\w.-]){name}=", option + " ", message)
        message = re.sub(rf"^{name}(?= must )", option, message)
    return message


def _default(function: Callable, parameter: str) -> Any:
    """The library's default for ``parameter`` of ``function``: the command line restates none of them."""
    import inspect

    return inspect.signature(function).parameters[parameter].default


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): the library's own defaults stand for the others."""
    return {name: value for name, value in options.items() if value is not None}


# ------------------------------------------------------------------------------------ showing results


def _terminal_width() -> int:
    """Columns to fit a table into: the terminal's (``$COLUMNS`` first), 100 when the output is not a terminal."""
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def _fitted(table: pd.DataFrame, paths: dict[str, str], width: int) -> tuple[pd.DataFrame, list[str]]:
    """``table`` for people: its path columns renamed (``paths``: column -> heading), shown under their common
    folder and shortened in the middle so that the table fits ``width`` columns; and lines saying those folders."""
    from lookalike.ingest import escaped, shortened

    present = [c for c in paths if c in table.columns]
    shown = table.copy()
    folders: dict[str, list[str]] = {}
    for column in present:
        folder = _common_folder(shown[column].tolist())
        if folder is not None:
            shown[column] = shown[column].map(lambda v, f=folder: _relative(v, f))
            folders.setdefault(folder, []).append(paths[column])
        shown[column] = shown[column].map(escaped)
    others = [c for c in shown.columns if c not in present]
    left = width - sum(len(shown[[c]].to_string(index=False).splitlines()[0]) + 2 for c in others)
    # The narrowest path column first: what it does not need, the wider ones may use.
    needs = {c: int(shown[c].map(lambda v: len(v) if isinstance(v, str) else 3).max()) for c in present}
    for i, column in enumerate(sorted(present, key=needs.get)):
        room = max(12, min(needs[column], left // (len(present) - i) - 2))
        left -= room + 2
        names = {v for v in shown[column] if isinstance(v, str)}
        common = len(os.path.commonprefix(sorted(names))) if len(names) > 1 else 0  # what they all start with
        shown[column] = shown[column].map(lambda v, c=common, r=room: shortened(v, r, c) if isinstance(v, str) else v)
    notes = [f"({', '.join(names)}: under {folder}{os.sep})" for folder, names in folders.items()]
    return shown[present[:1] + others + present[1:]].rename(columns=paths), notes


def _common_folder(values: list) -> str | None:
    """The deepest folder holding every file of ``values`` (URLs and missing values aside), unless it is the root."""
    files = [os.path.abspath(v) for v in values if isinstance(v, str) and "://" not in v]
    if not files:
        return None
    folder = os.path.commonpath([os.path.dirname(v) for v in files])
    return folder if folder != os.path.dirname(folder) else None


def _relative(value: Any, folder: str) -> Any:
    if not isinstance(value, str) or "://" in value:
        return value
    return os.path.relpath(os.path.abspath(value), folder)


def _show(
    table: pd.DataFrame,
    as_json: bool,
    metric: str | None = None,
    paths: dict[str, str] | None = None,
    hidden: tuple[str, ...] = (),
) -> None:
    """Print a result table: JSON records (every column, full paths, each row with its ``metric``), or a table that
    fits the terminal, paths first (``paths``: column -> heading), without the ``hidden`` columns."""
    from lookalike.store import json_records

    if as_json:
        print(json.dumps(json_records(table, metric)))
        return
    if table.empty:
        print("(no results)")
        return
    table = table.drop(columns=[c for c in hidden if c in table.columns and c not in (paths or {})])
    shown, notes = _fitted(table, paths or {}, _terminal_width())
    print("\n".join([*notes, shown.to_string(index=False)]))
    if metric is not None and "distance" in table.columns:
        print(f"(distances: {metric})")


def _files_shown(model: lk.ImageSimilarityModel, table: pd.DataFrame) -> tuple[str, ...]:
    """The label columns a table need not show beside the files: row numbers say nothing a path does not."""
    if model.label is not None:
        return ()
    return tuple(c for c in ("query_label", "reference_label", "__src_id", "__dst_id") if c in table.columns)


# ------------------------------------------------------------------------------------------ commands


def _updated_model(args: argparse.Namespace, output: Path) -> lk.ImageSimilarityModel | None:
    """The model already at ``output`` synced in place with the sources, or None when it must be built afresh."""
    from lookalike.embed import get_spec
    from lookalike.ingest import download_options
    from lookalike.store import is_saved_model

    if args.rebuild or args.engine != "local" or not is_saved_model(output):
        return None
    model = lk.load_model(output)
    # Without --model, --descriptor or --precision the model keeps what it was built with.
    wanted = (args.model or model.model_name, args.metric, args.id_column)
    if (model.model_name, model.metric, model.label) != wanted or args.method not in (
        "auto",
        model.summary("dict")["method"],
    ):
        return None  # another network, metric, id column or index: nothing to reuse
    if args.descriptor is not None or args.precision is not None:
        record = model.embedding_model or {}
        asked = (
            get_spec(wanted[0])
            .with_descriptor(_descriptor_option(args.descriptor) or record["descriptor"])
            .with_precision(args.precision or record["precision"])
        )
        if asked.fingerprint != record.get("fingerprint"):
            return None
    sources = args.sources if len(args.sources) > 1 else args.sources[0]
    model.sync(sources, verbose=not args.quiet, download=download_options(args))
    return model


def cmd_index(args: argparse.Namespace) -> int:
    from lookalike.embed import DEFAULT_MODEL
    from lookalike.engines import RayEngine
    from lookalike.ingest import download_options, is_embeddings_file, summarize_failures, write_report

    output = args.output or Path(Path(args.sources[0].rstrip("/")).stem + ".lookalike")
    embeddings_only = len(args.sources) == 1 and is_embeddings_file(args.sources[0])
    if embeddings_only and args.model:
        raise InvalidArgument(f"{args.sources[0]} holds embeddings already: drop --model {args.model}")
    model = (None if embeddings_only else _updated_model(args, output)) or lk.create(
        args.sources if len(args.sources) > 1 else args.sources[0],
        label=args.id_column,
        feature=args.url_column,
        model=None if embeddings_only else args.model or DEFAULT_MODEL,
        metric=args.metric,
        batch_size=args.batch_size,
        precision=args.precision,
        verbose=not args.quiet,
        download=download_options(args),
        descriptor=_descriptor_option(args.descriptor),
        engine=RayEngine(address=args.address, work_dir=args.work_dir) if args.engine == "ray" else "local",
        method=args.method,
    )
    model.save(output)
    report = None
    if args.report:
        beside = output.with_name(output.name + ".failures.csv")
        report = write_report(model.failures, beside if args.report is True else args.report)
    summary = model.summary(output="dict")
    if args.json:
        print(json.dumps({**summary, **model.build_stats, "output": str(output), "report": report and str(report)}))
    else:
        if len(model.failures):
            total = len(model.failures) + summary["num_references"]
            print(summarize_failures(model.failures, total), file=sys.stderr)
        if embeddings_only:
            print(f"indexed {summary['num_references']} embeddings in {summary['training_time']:.1f} s -> {output}")
            return 0
        print(_indexed_line(model, summary, output))
        for row in model.failures.head(10).itertuples():
            print(f"  skipped {row.source}: {row.reason}", file=sys.stderr)
        if len(model.failures) > 10:
            print(f"  ... and {len(model.failures) - 10} more (--report lists them all)", file=sys.stderr)
        if report:
            print(f"failure report: {report}", file=sys.stderr)
    return 0


def _indexed_line(model: lk.ImageSimilarityModel, summary: dict, output: Path) -> str:
    """What ``index`` did, in one line: a new model's counts, or what changed in one brought up to date."""
    stats = model.build_stats
    embedded, cached, skipped = stats.get("embedded", 0), stats.get("from_cache", 0), summary["num_failures"]
    took = f"with {summary['model']} in {summary['training_time']:.1f} s -> {output}"
    if "added" not in stats:
        return (
            f"indexed {summary['num_references']} images ({embedded} embedded, {cached} from cache, "
            f"{skipped} skipped) {took}"
        )
    # A file whose date changed is read again; if its picture did not change, neither does the model.
    reread = max(0, embedded - stats["added"] - stats["changed"])
    read = [f"{reread} re-read: the same picture"] if reread else []
    return (
        f"updated in place: {stats['added']} added, {stats['removed']} removed, {stats['changed']} changed "
        f"({'; '.join([*read, f'{cached} from cache', f'{skipped} skipped'])}): "
        f"{summary['num_references']} images {took}"
    )


def _threshold_option(args: argparse.Namespace, metric: str) -> float | None:
    """``--threshold`` (or Turi's ``--radius``), checked in ``metric`` and named as typed."""
    from lookalike.validation import check_distance

    if args.threshold is not None and args.radius is not None:
        raise InvalidArgument("--threshold and --radius are one option (--radius is Turi's name): give one")
    if args.radius is not None:
        return check_distance("--radius", args.radius, metric)
    return None if args.threshold is None else check_distance("--threshold", args.threshold, metric)


def cmd_query(args: argparse.Namespace) -> int:
    model = lk.load_model(args.model)
    threshold = _threshold_option(args, model.metric)
    if args.text is not None:
        if args.images:
            raise InvalidArgument("give query images or --text, not both")
        results = model.query_text(args.text, k=args.k, threshold=threshold)
        paths = {"reference_path": "reference"}
        _show(results, args.json, model.metric, paths, hidden=_files_shown(model, results))
        return 0
    if not args.images:
        raise InvalidArgument("give one or more query images or folders, or --text 'a description'")
    rerank = False
    if args.rerank:
        from lookalike.operations import Verifier

        rerank = Verifier(method=args.rerank, min_inliers=args.min_inliers)
    results = model.query(
        [os.fspath(p) for p in args.images],
        k=args.k,
        threshold=threshold,
        verbose=not args.quiet,
        verify=rerank,
        shortlist=args.shortlist,
    )
    paths = {"query_path": "query", "reference_path": "reference"}
    _show(results, args.json, model.metric, paths, hidden=("query_label", *_files_shown(model, results)))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from lookalike.store import STREAM_SUFFIXES, TABLE_SUFFIXES, check_output, count_rows, write_table

    if args.output:
        check_output(args.output, TABLE_SUFFIXES)
    model = lk.load_model(args.model)
    threshold = _threshold_option(args, model.metric)
    options = dict(k=args.k, threshold=threshold, include_self_edges=args.include_self_edges, output_type="table")
    if args.output and args.output.suffix.lower() in STREAM_SUFFIXES:  # streamed block by block
        path = model.similarity_graph(**options, path=args.output)
        print(f"wrote {count_rows(path)} edges over {len(model.labels)} images to {path}")
        return 0
    edges = model.similarity_graph(**options)
    if args.output:
        write_table(args.output, edges, metric=model.metric)
        print(f"wrote {len(edges)} edges over {len(model.labels)} images to {args.output}")
    else:
        paths = {"__src_path": "image", "__dst_path": "neighbour"}
        _show(edges, args.json, model.metric, paths, hidden=_files_shown(model, edges))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from lookalike.explore import MAP_FILE

    model = lk.load_model(args.model)
    saved = model.map
    layout = model.compute_map(args.method, verbose=not args.quiet)
    if layout is not saved:
        model.save_map(args.model)
    what = {"tsne": "t-SNE", "pca": "PCA"}[layout.method]
    if args.json:
        record = {**layout.record(), "clusters": layout.cluster_count, "reused": layout is saved}
        print(json.dumps({**record, "path": str(Path(args.model) / MAP_FILE)}))
        return 0
    if layout is saved:
        print(f"the saved {what} map of {len(layout)} references is up to date: nothing to do")
    else:
        print(
            f"{what} map of {len(layout)} references, {layout.cluster_count} clusters, in {layout.seconds:.1f} s: "
            f"saved in {Path(args.model) / MAP_FILE}"
        )
    if layout.note:
        print(layout.note)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from lookalike.summary import describe, summary_text

    # From the manifest and the files' checks, without loading the embeddings, the tables or the index.
    described = describe(args.model, whole=args.checksums)
    checked = described.pop("checked")
    if not checked["files"]:
        lk.load_model(args.model)  # a format-1 model has no checksums: its files are checked by reading them
    if args.json:
        print(json.dumps({**described, **({"verified": checked} if args.checksums else {})}))
        return 0
    print(summary_text(described))
    if args.checksums and checked["files"]:
        print(f"verified: {checked['files']} files, {checked['bytes']:,} bytes, every SHA-256 matches")
    elif args.checksums:
        print("verified: nothing to check, a format-1 model has no checksums (save it again to record them)")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from lookalike.store import STREAM_SUFFIXES, TABLE_SUFFIXES, check_output, count_rows, write_table
    from lookalike.validation import check_distance, check_positive_int

    if args.output:
        check_output(args.output, TABLE_SUFFIXES)  # before embedding anything
    if args.k is not None:
        check_positive_int("-k", args.k)
    if args.threshold is not None:
        check_distance("--threshold", args.threshold, args.metric or "dot")  # the sign once the metric is known
    options = dict(
        threshold=args.threshold, k=args.k, metric=args.metric, verbose=not args.quiet, one_to_one=args.one_to_one
    )
    if args.output and args.output.suffix.lower() in STREAM_SUFFIXES:  # streamed block by block
        path = lk.match(args.a, args.b, path=args.output, **options)
        print(f"wrote {count_rows(path)} pairs to {path}")
        return 0
    pairs = lk.match(args.a, args.b, **options)
    metric = pairs.attrs["metric"]
    if args.output:
        write_table(args.output, pairs, metric=metric)
        print(f"wrote {len(pairs)} pairs to {args.output}")
        return 0
    paths = {"a_path": "a", "b_path": "b"}
    hidden = tuple(f"{side}_label" for side in "ab" if f"{side}_path" in pairs.columns)  # files say more
    if args.json or not args.one_to_one or args.all:
        _show(pairs, args.json, metric, paths, hidden)
        return 0
    matched = pairs["distance"].notna()
    _show(pairs[matched], args.json, metric, paths, hidden)
    for side, other in (("a", "b"), ("b", "a")):
        alone = pairs[~matched & pairs[f"{other}_label"].isna()]
        if len(alone):
            column = f"{side}_path" if f"{side}_path" in alone.columns else f"{side}_label"
            shown = ", ".join(str(v) for v in alone[column].head(UNMATCHED_SHOWN))
            more = f" and {len(alone) - UNMATCHED_SHOWN} more" if len(alone) > UNMATCHED_SHOWN else ""
            print(f"{len(alone)} of set {side} unmatched: {shown}{more}")
    if (~matched).any():
        print("(--all lists every unmatched image; -o FILE writes them all)")
    return 0


def _dedup_source(source: Path, metric: str | None, verbose: bool) -> lk.ImageSimilarityModel:
    """The model a dedup works on: a saved model (in its own metric), or a folder indexed now (with the embedding
    cache, in ``metric``, else index's default)."""
    from lookalike.model import open_source

    if not source.is_dir():  # a saved model is a folder too
        raise NotADirectoryError(f"dedup needs a folder of images or a saved model, and {source} is neither")
    return open_source(str(source), verbose=verbose, **_given(metric=metric))


def _review_model(args: argparse.Namespace) -> Path:
    """The saved model a review works on: the source itself, or the folder's model (made now, or brought up to date)."""
    from lookalike.store import is_saved_model

    if is_saved_model(args.source):
        return args.source
    if not args.source.is_dir():
        raise NotADirectoryError(f"dedup needs a folder of images or a saved model, and {args.source} is neither")
    target = args.save or args.source.resolve().parent / f"{args.source.resolve().name}.lookalike"
    if is_saved_model(target):
        model = lk.load_model(target)
        changes = model.sync(str(args.source), verbose=not args.quiet)
        print(f"{target}: {changes['added']} added, {changes['removed']} removed, {changes['changed']} changed")
    else:
        model = lk.create(str(args.source), verbose=not args.quiet, **_given(metric=args.metric))
    model.save(target)
    return target


def cmd_dedup(args: argparse.Namespace) -> int:
    from lookalike import dedup
    from lookalike.store import is_saved_model, write_table

    if args.review:
        if args.delete:
            raise InvalidArgument("--review moves discarded files (with undo), it never deletes: drop --delete")
        _serve(args, _review_model(args), view="duplicates")
        return 0
    model = _dedup_source(args.source, metric=args.metric, verbose=not args.quiet)
    if args.calibrate:
        threshold = args.threshold if args.threshold is not None else dedup.default_threshold(model.core)
        calibration = model.calibrate_duplicates()
        _show(calibration.table() if args.json else calibration.shown(), args.json)
        print(calibration.summary(threshold))
        return 0
    acted = dedup.check_tiers(args.act_on.split(","), dedup.COPY_TIERS, "--act-on")
    duplicates = model.find_duplicates(
        threshold=args.threshold, keep=args.keep, k=args.k, act_on=acted, keep_in=args.keep_in, verbose=not args.quiet
    )
    with contextlib.suppress(OSError):  # a model on a read-only disk: its next dedup searches its candidates again
        model.save_candidates()
    if args.report:
        write_table(args.report, duplicates, metric=model.metric)
    if args.json:
        _show(duplicates, True, model.metric)
    else:
        print(dedup.summary_text(duplicates, "move" if not args.delete else "delete"))
    others = int((duplicates["action"] == "discard").sum())
    if not (args.move_to or args.delete) or others == 0:
        if others and not args.json:
            print(
                f"dry run: nothing moved or deleted (--move-to DIR or --delete to act on the {','.join(acted)} copies)"
            )
        return 0
    mode = "move" if args.move_to else "permanently" if args.permanently else "trash"
    if mode == "permanently" and not args.yes:
        if not sys.stdin.isatty():
            raise InvalidArgument(
                f"refusing to delete {others} files for good without confirmation (no terminal): add --yes"
            )
        if input(f"delete {others} copies for good, with no undo (keepers stay)? [y/N] ").strip().lower() not in (
            "y",
            "yes",
        ):
            print("nothing deleted")
            return 1
    decisions = dedup.Decisions()
    keepers = dict(
        zip(duplicates.loc[duplicates["keeper"], "group"], duplicates.loc[duplicates["keeper"], "path"], strict=True)
    )
    for row in duplicates[duplicates["action"] == "discard"].itertuples():
        decisions.discard(row.path, keepers[row.group])
    saved = args.source if is_saved_model(args.source) else None
    # An earlier dedup (or apply) cut short is finished first: nothing is left in two places or half copied.
    for manifest in model.interrupted_applies(args.move_to):
        _carried_out(lambda manifest=manifest: model.resume_decisions(manifest, path=saved), f" (finishing {manifest})")
    model.decisions.merge(decisions)
    _carried_out(lambda: model.apply_decisions(args.move_to, path=saved, mode=mode))
    return 0


def _holding(model: Path | str):
    """The lock of a saved model's folder (nothing for a path that is not one): held across load, change and save,
    so that two commands changing one model take turns and each starts from what the other saved."""
    from lookalike.store import is_saved_model, locked

    return locked(model) if is_saved_model(model) else contextlib.nullcontext()


def _print_moves(report, where: str = "") -> None:
    print(f"{report.summary()}{where}")
    for path, reason in report.skipped:
        print(f"  {'not restored' if report.undone else 'skipped'} {path}: {reason}", file=sys.stderr)
    for path in report.deleted:
        print(f"  not restored {path}: it was deleted permanently", file=sys.stderr)


def _carried_out(act, where: str = ""):
    """``act()``'s report, printed; an apply or undo stopped early (a full disk...) prints what it did first."""
    try:
        report = act()
    except LookalikeError as exc:
        if getattr(exc, "report", None) is not None:
            _print_moves(exc.report, where)
        raise
    _print_moves(report, where)
    return report


def cmd_apply(args: argparse.Namespace) -> int:
    mode = "trash" if args.trash else "permanently" if args.permanently else "move"
    if args.resume and (args.move_to or mode != "move"):
        raise InvalidArgument("--resume finishes an apply as its manifest says: drop --move-to, --trash, --permanently")
    if mode == "permanently" and not args.yes:
        raise InvalidArgument("--permanently deletes the discarded files for good (no undo): add --yes to confirm")
    with _holding(args.model):
        model = lk.load_model(args.model)
        if args.resume:
            _carried_out(lambda: model.resume_decisions(args.resume, path=args.model))
        else:
            destination = args.move_to or (discarded_folder(args.model) if mode == "move" else None)
            _carried_out(lambda: model.apply_decisions(destination, path=args.model, mode=mode))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from lookalike import dedup
    from lookalike.store import is_saved_model

    folder = dedup.read_manifest(args.manifest).get("model")
    if folder and is_saved_model(folder):
        with _holding(folder):
            model = lk.load_model(folder)
            report = _carried_out(
                lambda: model.undo_moves(args.manifest, path=folder, verbose=False), f"; added back to {folder}"
            )
    else:
        report = _carried_out(lambda: dedup.undo(args.manifest))
    return 0 if not report.skipped else 1


def cmd_decide(args: argparse.Namespace) -> int:
    from lookalike.dedup import DamagedDecisions, set_aside_damaged
    from lookalike.store import write_table

    try:
        model = lk.load_model(args.model)
    except DamagedDecisions:
        set_aside_damaged(args.model)  # raises, naming both files (returns if another process already did it)
        model = lk.load_model(args.model)
    label = _label_parser(model)
    for keep in args.keep:
        model.mark_keeper(label(keep))
    for a, b in args.not_duplicate:
        model.mark_not_duplicate(label(a), label(b))
    for a, keeper in args.discard:
        model.mark_discarded(label(a), label(keeper))
    if args.keep or args.not_duplicate or args.discard:
        model.save_decisions(args.model)
    elif not args.export:
        raise InvalidArgument(
            "nothing to record: give --keep FILE, --discard FILE KEEPER or --not-duplicate A B (or --export)"
        )
    if args.export:
        pairs = model.decisions.pairs()
        write_table(args.export, pairs)
        print(
            f"wrote {len(pairs)} labelled pairs to {args.export} (score a network on them: lookalike evaluate --pairs)"
        )
    print(f"{len(model.decisions)} decisions in {args.model}")
    return 0


def _label_parser(model: lk.ImageSimilarityModel) -> Callable[[str], Any]:
    """A reference named on the command line: by its file's path (as given, or from the current folder), or by
    its label (row numbers read back as numbers)."""
    paths = {p: i for i, p in enumerate(model.core.file_paths()) if p is not None}
    labels = model.labels

    def reference(text: str) -> Any:
        for candidate in (text, os.path.abspath(text), os.path.realpath(text)):
            if candidate in paths:
                value = labels[paths[candidate]]
                return value.item() if hasattr(value, "item") else value  # a numpy scalar as the label it is
        if model.label is not None:
            return text
        try:
            return int(text)
        except ValueError:
            raise InvalidArgument(
                f"{text!r} is neither a file of this model nor one of its labels (row numbers): "
                "give the path of an indexed file"
            ) from None

    return reference


def discarded_folder(model: Path) -> Path:
    """Where the explorer moves discarded files by default: beside the model's folder."""
    return model.resolve().parent / f"{model.resolve().name}-discarded"


def cmd_serve(args: argparse.Namespace) -> int:
    if args.max_upload_mb is not None and (not args.max_upload_mb > 0 or math.isinf(args.max_upload_mb)):
        raise InvalidArgument(f"--max-upload-mb must be a positive number of megabytes, got {args.max_upload_mb:g}")
    _serve(args, args.model, view=None)
    return 0


def _serve(args: argparse.Namespace, model: Path, view: str | None) -> None:
    from lookalike.server import serve

    served = lk.load_model(model)
    matched = (
        _matched_set(served, args.match, args.match_threshold, args.quiet) if getattr(args, "match", None) else None
    )
    serve(
        served,
        model_path=model,
        move_to=getattr(args, "move_to", None) or discarded_folder(model),
        matched=matched,
        view=view if matched is None else "match",
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("LOOKALIKE_TOKEN") or None,
        cors=args.cors,
        open_browser=getattr(args, "open", True),
        log_level="warning" if args.quiet else "info",
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )


def _matched_set(model: lk.ImageSimilarityModel, source: Path, threshold: float | None, quiet: bool):
    """The second set of ``serve --match``, embedded as the model's references were, paired one to one with them."""
    from lookalike import dedup
    from lookalike.server import MatchedSet
    from lookalike.store import is_saved_model

    if threshold is None:
        threshold = dedup.default_threshold(model.core)
    if is_saved_model(source):
        other = lk.load_model(source)
    elif model.embedding_model is None:  # no network to embed the images with
        raise InvalidArgument("this model holds precomputed embeddings: --match needs a saved model of the same kind")
    else:
        other = model.index_like(str(source), verbose=not quiet)
    pairs = lk.match(model, other, threshold=threshold, metric=model.metric, one_to_one=True, verbose=not quiet)
    return MatchedSet(other, pairs, threshold)


def cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from lookalike.embed import fetch, list_models

    if args.action == "fetch":
        if not args.name:
            raise InvalidArgument("usage: lookalike models fetch NAME")
        paths = fetch(args.name)
        print(
            json.dumps({"name": args.name, "files": [str(p) for p in paths]})
            if args.json
            else f"{args.name}: ready ({', '.join(str(p) for p in paths)})"
        )
        return 0
    table = pd.DataFrame(list_models())
    if args.json:
        _show(table, True)
        return 0
    table = table.assign(
        available=[
            "yes" if ready else f"no: {how}" for ready, how in zip(table["available"], table["install"], strict=True)
        ],
        text=table["text"].map({True: "text", False: ""}),
    )
    _show(table.drop(columns=["source", "install", "license"]), False)
    return 0


def _descriptor_option(value: str | None) -> str | dict | None:
    """``--descriptor``: a preset name, or a JSON object of descriptor options."""
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise InvalidArgument(f"--descriptor {value!r} is neither a preset name nor a JSON object ({exc})") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.folder is None) == (args.pairs is None):
        raise InvalidArgument("give a FOLDER of group sub-folders, or --pairs FILE of judged pairs (not both)")
    if args.pairs is not None:
        pairs = lk.evaluate_pairs(
            args.pairs,
            model=args.model,
            threshold=args.threshold,
            verbose=not args.quiet,
            descriptor=_descriptor_option(args.descriptor),
            precision=args.precision,
            **_given(metric=args.metric),
        )
        print(json.dumps(pairs.metrics) if args.json else pairs)
        return 0
    report = lk.evaluate(
        args.folder,
        model=args.model,
        k=args.k,
        verbose=not args.quiet,
        descriptor=_descriptor_option(args.descriptor),
        precision=args.precision,
        train=args.train,
        **_given(metric=args.metric),
    )
    if args.html:
        report.to_html(args.html, worst=args.worst)
    if args.json:
        print(report.to_json(queries=False))
    else:
        print(report.to_text(worst=min(args.worst, 10)))
        if args.html:
            print(f"\nHTML report of the {args.worst} worst queries: {args.html}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.onnx or args.coreml):
        raise InvalidArgument("say what to write: --onnx FILE.onnx and/or --coreml FILE.mlpackage")
    model = lk.load_model(args.model)
    written = [model.export_onnx(args.onnx, k=args.k)] if args.onnx else []
    written += [model.export_coreml(args.coreml, k=args.k)] if args.coreml else []
    if args.json:
        print(json.dumps({"written": [str(path) for path in written], "k": min(args.k, len(model.labels))}))
    else:
        print("\n".join(f"wrote {path}" for path in written))
    return 0


# ------------------------------------------------------------------------------------------------------- audit
def cmd_audit(args: argparse.Namespace) -> int:
    report = lk.audit(
        str(args.source),
        class_column=args.class_column,
        split_column=args.split_column,
        verbose=not args.quiet and not args.json,
        k=args.k,
        threshold=args.threshold,
        min_precision=args.min_precision,
        duplicates=not args.no_duplicates,
    )
    if args.html:
        report.to_html(args.html)
    if args.json:
        print(report.to_json())
        return 0
    from lookalike.ingest import escaped  # names that are not UTF-8 shown with \xNN escapes

    print(report.summary())
    for row in report.findings.head(args.show).itertuples():
        suggestion = f" -> {row.suggested_label}" if isinstance(row.suggested_label, str) else ""
        shown = " | ".join(str(escaped(p)) for p in row.paths)
        print(f"{row.kind:15} {row.score:.2f}  {shown}: {row.reason}{suggestion}")
    if args.html:
        print(f"report: {args.html}")
    return 0


def _audit_arguments(audit: argparse.ArgumentParser) -> None:
    audit.add_argument("source", type=Path, help="a folder of photos, a table (.csv/.parquet) of paths, a saved model")
    audit.add_argument("--class-column", help="the column holding each photo's class (default: its folder)")
    audit.add_argument("--split-column", help="the column holding each photo's split (default: train/ val/ test/)")
    audit.add_argument("--html", type=Path, help="write a report that stands alone (thumbnails inside) here")
    audit.add_argument(
        "-k",
        type=int,
        default=_default(lk.ImageSimilarityModel.audit, "k"),
        help="neighbours looked at per photo (default: %(default)s)",
    )
    audit.add_argument("--threshold", type=float, help="largest distance of a near-copy leak (default: measured)")
    audit.add_argument(
        "--min-precision",
        type=float,
        default=_default(lk.ImageSimilarityModel.audit, "min_precision"),
        help="least measured precision of a finding (default: %(default)s)",
    )
    audit.add_argument("--no-duplicates", action="store_true", help="skip the pixel checks of copies (faster)")
    audit.add_argument("--show", type=int, default=20, help="findings listed without --json (default: %(default)s)")


def _add_serve_options(command: argparse.ArgumentParser, quiet: bool = True) -> None:
    try:
        from lookalike.server import create_app, serve

        host, port = _default(serve, "host"), _default(serve, "port")
        upload_mb = _default(create_app, "max_upload_bytes") / 2**20
    except ImportError:  # no server extra: serving says which pip install adds it
        host = port = upload_mb = None
    command.add_argument("--host", default=host, help="address to bind (default: %(default)s)")
    command.add_argument("--port", type=int, default=port, help="port (default: %(default)s; 0 picks a free one)")
    command.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (needed to bind beyond loopback)")
    command.add_argument("--cors", action="append", metavar="ORIGIN", help="allow API calls from this origin")
    command.add_argument("--max-upload-mb", type=float, default=upload_mb, help="largest upload (default: %(default)s)")
    if quiet:
        command.add_argument("-q", "--quiet", action="store_true", help="log warnings only, not every request")


class _AnyOrder(argparse.ArgumentParser):
    """A command's parser taking options anywhere among its positional arguments (``query MODEL -k 3 IMG``)."""

    _mixing = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's own signature
        # parse_known_intermixed_args calls parse_known_args itself, twice: those calls parse as usual.
        if self._mixing:
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


# ------------------------------------------------------------------------------------------ arguments
# Each command's arguments are defined only when that command runs (or for --help on it): a command's choices
# and defaults come from the library, and importing the library's stages is what makes a start slow.


def _index_arguments(index: argparse.ArgumentParser) -> None:
    from lookalike.embed import BATCH_SIZE, DEFAULT_MODEL
    from lookalike.index import DEFAULT_METRIC, METRICS
    from lookalike.ingest import add_download_options

    index.add_argument(
        "sources",
        nargs="+",
        help="folders, files, globs, URLs, one table (.csv .tsv .parquet .txt), or one .npy of embeddings",
    )
    index.add_argument("-o", "--output", type=Path, help="model directory to write (default: SOURCE-NAME.lookalike)")
    index.add_argument("--id-column", help="a table's id column: names the references and their failures")
    index.add_argument("--url-column", "--path-column", help="a table's column of image paths or URLs")
    add_download_options(index)
    index.add_argument(
        "--model", help=f"embedding network (default: the model's own when updating one, else {DEFAULT_MODEL})"
    )
    index.add_argument("--precision", help=_precision_help())
    index.add_argument("--metric", default=DEFAULT_METRIC, choices=METRICS, help="default: %(default)s")
    index.add_argument("--descriptor", help=DESCRIPTOR_HELP)
    index.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help=f"images per inference call (default {BATCH_SIZE})"
    )
    index.add_argument(
        "--method",
        default=_default(lk.create, "method"),
        help="auto (default), brute_force, hnsw, ivf or a faiss factory string",
    )
    index.add_argument("--rebuild", action="store_true", help="rebuild OUTPUT from scratch instead of updating it")
    index.add_argument(
        "--engine", choices=["local", "ray"], default=_default(lk.create, "engine"), help="local (default) or ray"
    )
    index.add_argument("--address", help="Ray cluster to join with --engine ray (ray://HEAD:10001, auto)")
    index.add_argument("--work-dir", help="--engine ray: folder or s3:// URI for the shards (shared by all nodes)")
    index.add_argument(
        "--report",
        nargs="?",
        const=True,
        type=Path,
        help="write every skipped input (id, source, kind, reason) as CSV to REPORT (default: OUTPUT.failures.csv)",
    )


def _precision_help() -> str:
    from lookalike.embed import PRECISIONS

    return f"{' or '.join(PRECISIONS)} or auto (int8 where the CPU has VNNI); default: the network's own"


def _add_threshold(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--threshold", type=float, help=f"only {what} at most this far, in the model's metric")
    command.add_argument("--radius", type=float, help="Turi's name for --threshold")


def _query_arguments(query: argparse.ArgumentParser) -> None:
    from lookalike.operations import Verifier

    query.add_argument("model", type=Path, help="a model directory made by 'lookalike index'")
    query.add_argument("images", nargs="*", type=Path, help="query images, or folders of them")
    query.add_argument("--text", help="find images matching this description (models with a text tower: clip-vit-b-32)")
    query.add_argument(
        "-k",
        type=int,
        default=_default(lk.ImageSimilarityModel.query, "k"),
        help="neighbours per image (default: %(default)s)",
    )
    _add_threshold(query, "neighbours")
    query.add_argument(
        "--rerank",
        nargs="?",
        const=_default(Verifier, "method"),
        choices=("sift", "orb"),
        help="re-rank the shortlist by geometric verification (local features + RANSAC); adds an inliers column. "
        "Features: sift (default) or orb (faster)",
    )
    query.add_argument(
        "--shortlist",
        type=int,
        default=_default(lk.ImageSimilarityModel.query, "shortlist"),
        help="with --rerank: candidates checked per image",
    )
    query.add_argument(
        "--min-inliers",
        type=int,
        default=_default(Verifier, "min_inliers"),
        help="with --rerank: inliers that verify a match",
    )


def _graph_arguments(graph: argparse.ArgumentParser) -> None:
    graph.add_argument("model", type=Path)
    graph.add_argument(
        "-k",
        type=int,
        default=_default(lk.ImageSimilarityModel.similarity_graph, "k"),
        help="neighbours per image (default: %(default)s)",
    )
    _add_threshold(graph, "edges")
    graph.add_argument("--include-self-edges", action="store_true")
    graph.add_argument(
        "-o",
        "--output",
        type=Path,
        help="edges file: .parquet, .csv, .json or .jsonl; columns __src_id, __dst_id (labels), distance, rank, "
        "__src_path, __dst_path (the files), metric",
    )


def _map_arguments(map_cmd: argparse.ArgumentParser) -> None:
    from lookalike.explore import METHODS

    map_cmd.add_argument("model", type=Path, help="a model saved by lookalike index")
    map_cmd.add_argument(
        "--method",
        choices=METHODS,
        default=_default(lk.ImageSimilarityModel.compute_map, "method"),
        help="tsne keeps neighbours near each other (needs lookalike[map]); pca is fast; auto: tsne when installed",
    )


def _info_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("model", type=Path)
    info.add_argument(
        "--checksums",
        action="store_true",
        help="read every byte and check it against the checksums saved with the model (info and a load check "
        "large files by samples)",
    )


def _match_arguments(match: argparse.ArgumentParser) -> None:
    from lookalike.index import DEFAULT_METRIC, METRICS

    match.add_argument("a", help="set A: folder, glob, table file or saved model")
    match.add_argument("b", help="set B: folder, glob, table file or saved model")
    match.add_argument(
        "--threshold",
        type=float,
        help="largest distance of a pair (default: the one measured for the network and metric, as dedup's)",
    )
    match.add_argument("-k", type=int, help="at most the k nearest B images per A image")
    match.add_argument(
        "--metric", choices=METRICS, help=f"default: a saved model's own; for folders, {DEFAULT_METRIC} (as index)"
    )
    match.add_argument(
        "--one-to-one",
        action="store_true",
        help="each image in one pair at most, closest first; then how many of each side are left unmatched",
    )
    match.add_argument("--all", action="store_true", help="with --one-to-one: list every unmatched image")
    match.add_argument("-o", "--output", type=Path, help="pairs file: .parquet, .csv, .json or .jsonl")


def _dedup_arguments(dedup_cmd: argparse.ArgumentParser) -> None:
    from lookalike.dedup import POLICIES
    from lookalike.index import DEFAULT_METRIC, METRICS

    finder = lk.ImageSimilarityModel.find_duplicates

    dedup_cmd.add_argument("source", type=Path, help="a folder of images (indexed, with the cache) or a saved model")
    dedup_cmd.add_argument("--threshold", type=float, help="largest distance of two duplicates (default: measured)")
    dedup_cmd.add_argument(
        "--keep", default=_default(finder, "keep"), choices=POLICIES, help="keeper policy (docs/dedup.md)"
    )
    dedup_cmd.add_argument(
        "--metric", choices=METRICS, help=f"for a folder (default {DEFAULT_METRIC}, as index); a model keeps its own"
    )
    dedup_cmd.add_argument(
        "-k", type=int, default=_default(finder, "k"), help="neighbours looked at per image (default: %(default)s)"
    )
    dedup_cmd.add_argument(
        "--keep-in",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="never discard a file under DIR (repeat for more folders); a keeper is taken from them first",
    )
    act = dedup_cmd.add_mutually_exclusive_group()
    act.add_argument("--move-to", type=Path, help="move duplicates here, keeping their paths relative to SOURCE")
    act.add_argument("--delete", action="store_true", help="move the copies to the system trash (undo restores them)")
    dedup_cmd.add_argument(
        "--permanently", action="store_true", help="with --delete: remove the copies' bytes for good (asks first)"
    )
    dedup_cmd.add_argument("--yes", action="store_true", help="delete permanently without asking")
    dedup_cmd.add_argument(
        "--calibrate",
        action="store_true",
        help="measure on copies of your own photos what each threshold finds and links by mistake; act on nothing",
    )
    dedup_cmd.add_argument(
        "--act-on",
        default=",".join(_default(finder, "act_on")),
        metavar="TIERS",
        help="which copies to move or delete: some of %(default)s (a look-alike, 'similar', is never acted on)",
    )
    dedup_cmd.add_argument("--report", type=Path, help="write the groups to .csv, .parquet, .json or .jsonl")
    dedup_cmd.add_argument(
        "--review",
        action="store_true",
        help="review the groups in the web explorer (keyboard: keep, discard, not a duplicate; then apply, with undo)",
    )
    dedup_cmd.add_argument(
        "--save", type=Path, help="--review of a folder: where its model is saved (default: FOLDER.lookalike beside it)"
    )
    _add_serve_options(dedup_cmd, quiet=False)


def _apply_arguments(apply: argparse.ArgumentParser) -> None:
    apply.add_argument("model", type=Path, help="a saved model with discard decisions")
    action = apply.add_mutually_exclusive_group()
    action.add_argument("--move-to", type=Path, help="where discarded files go (default: MODEL-discarded beside it)")
    action.add_argument(
        "--trash", action="store_true", help="move them to the system trash instead (Linux; lookalike undo restores)"
    )
    action.add_argument("--permanently", action="store_true", help="delete them for good (no undo; needs --yes)")
    apply.add_argument("--yes", action="store_true", help="confirm --permanently")
    apply.add_argument("--resume", type=Path, metavar="MANIFEST", help="finish an apply that was interrupted")


def _undo_arguments(undo: argparse.ArgumentParser) -> None:
    undo.add_argument("manifest", type=Path, help="the manifest an apply wrote (lookalike-moves-*.json)")


def _decide_arguments(decide: argparse.ArgumentParser) -> None:
    decide.add_argument("model", type=Path, help="a model saved by lookalike index")
    decide.add_argument(
        "--keep", metavar="FILE", action="append", default=[], help="keep this file (a path, or a label) in its group"
    )
    decide.add_argument(
        "--not-duplicate", nargs=2, metavar=("A", "B"), action="append", default=[], help="never link A and B"
    )
    decide.add_argument(
        "--discard",
        nargs=2,
        metavar=("FILE", "KEEPER"),
        action="append",
        default=[],
        help="FILE is a duplicate of KEEPER (paths, or labels): lookalike apply moves it away",
    )
    decide.add_argument("--export", type=Path, help="write the judged pairs (a, b, duplicate) to .csv/.parquet/.json")


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("model", type=Path)
    serve.add_argument("--open", action="store_true", help="open the explorer in a web browser")
    serve.add_argument(
        "--move-to", type=Path, help="where the page's apply moves discarded files (default: MODEL-discarded beside it)"
    )
    serve.add_argument(
        "--match", type=Path, metavar="SET", help="pair each reference with at most one image of SET (the Match view)"
    )
    serve.add_argument(
        "--match-threshold", type=float, help="largest distance of a --match pair (default: the dedup threshold)"
    )
    _add_serve_options(serve)


def _models_arguments(models: argparse.ArgumentParser) -> None:
    models.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    models.add_argument("name", nargs="?", help="model to fetch (a zoo model), or to build (a built-in one)")


def _evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    from lookalike.index import METRICS

    worst = _default(lk.EvaluationReport.to_html, "worst")
    evaluate.add_argument("folder", type=Path, nargs="?", help="a folder whose sub-folders are the groups (classes)")
    evaluate.add_argument(
        "--pairs", type=Path, help="score on judged pairs instead (a, b, duplicate: lookalike decide --export)"
    )
    evaluate.add_argument("--threshold", type=float, help="--pairs: distance to report precision and recall at")
    evaluate.add_argument(
        "--model", default=_default(lk.evaluate, "model"), help="embedding network (default: %(default)s)"
    )
    evaluate.add_argument("--precision", help=_precision_help())
    evaluate.add_argument(
        "--metric",
        choices=METRICS,
        help=f"default: {_default(lk.evaluate, 'metric')}; {_default(lk.evaluate_pairs, 'metric')} with --pairs",
    )
    evaluate.add_argument("--descriptor", help=DESCRIPTOR_HELP)
    evaluate.add_argument("--train", type=Path, help="learn an LDA projection from this folder of class sub-folders")
    cut_offs = list(_default(lk.evaluate, "k"))
    evaluate.add_argument(
        "-k", type=int, nargs="+", default=cut_offs, help=f"cut-offs (default: {' '.join(map(str, cut_offs))})"
    )
    evaluate.add_argument("--html", type=Path, help="write a self-contained HTML report of the worst queries here")
    evaluate.add_argument(
        "--worst", type=int, default=worst, help=f"queries shown in the HTML report (default: {worst})"
    )


def _export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("model", type=Path, help="a saved model directory")
    export.add_argument(
        "--onnx",
        type=Path,
        help="ONNX file to write (ONNX Runtime: mobile, web, any language); its files' paths "
        "in the lookalike.paths metadata",
    )
    export.add_argument("--coreml", type=Path, help=".mlpackage to write (iOS/macOS apps; needs lookalike[coreml])")
    export.add_argument(
        "-k",
        type=int,
        default=_default(lk.ImageSimilarityModel.export_onnx, "k"),
        help="neighbours returned per image (default: %(default)s)",
    )


#: name -> (help, arguments, run, takes --json and -q).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], bool]]
COMMANDS = {
    "index": ("embed and index images into a model directory", _index_arguments, cmd_index, True),
    "query": ("find the references most like some images", _query_arguments, cmd_query, True),
    "graph": ("every reference's k nearest neighbours (the similarity graph)", _graph_arguments, cmd_graph, True),
    "map": ("compute and save the 2-D map the explorer shows (t-SNE, or PCA)", _map_arguments, cmd_map, True),
    "info": ("describe a saved model", _info_arguments, cmd_info, True),
    "match": ("pairs of look-alike images between two sets (folders or models)", _match_arguments, cmd_match, True),
    "dedup": (
        "find near-duplicate images; report (default), move or delete them",
        _dedup_arguments,
        cmd_dedup,
        True,
    ),
    "apply": (
        "move the files marked discarded out of a saved model's folders (an undo manifest is written)",
        _apply_arguments,
        cmd_apply,
        False,
    ),
    "undo": ("put back the files an apply moved, and add them back to the model", _undo_arguments, cmd_undo, False),
    "decide": (
        "record a duplicate decision in a saved model (honoured by dedup)",
        _decide_arguments,
        cmd_decide,
        False,
    ),
    "serve": ("web explorer and REST API for a model (127.0.0.1 by default)", _serve_arguments, cmd_serve, False),
    "models": ("list the embedding models (size, available) or fetch one", _models_arguments, cmd_models, True),
    "evaluate": (
        "retrieval quality on a folder of group sub-folders: precision@k, recall@k, mAP, N-S",
        _evaluate_arguments,
        cmd_evaluate,
        True,
    ),
    "export": ("write a model for apps: ONNX and/or Core ML, top-k inside", _export_arguments, cmd_export, True),
    "audit": (
        "dataset health: leaks, label errors, outliers, poor or broken photos, duplicates",
        _audit_arguments,
        cmd_audit,
        True,
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``command``, of that one only (the others are listed, not defined)."""
    parser = argparse.ArgumentParser(prog="lookalike", description="Find similar images.")
    parser.add_argument("--version", action="version", version=f"lookalike {lk.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_AnyOrder)
    for name, (help_text, arguments, run_command, common) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run_command)
        if command is not None and name != command:
            continue
        arguments(sub)
        if common:
            sub.add_argument("--json", action="store_true", help="machine-readable JSON output")
            sub.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    args = build_parser(command).parse_args(argv) if command else build_parser("").parse_args(argv)
    if args.debug:
        return run(args)
    with warnings.catch_warnings():
        # What lookalike warns about (a folder it cannot read, a damaged cache moved aside) reaches the user, one line
        # each; the images skipped are listed by the commands themselves.
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", message=r"\d+ images skipped \(see model\.failures\)")
        return run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' own
    print(f"lookalike: warning: {str(message).replace(chr(10), ' ')}", file=sys.stderr, flush=True)


def _reader_gone() -> int:
    """The reader of our output went away (``| head -3``): stop quietly, as a shell tool does (128 + SIGPIPE)."""
    # Python flushes stdout again at exit: point it at /dev/null so that this flush cannot fail too.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141


def run(args: argparse.Namespace) -> int:
    """Run a parsed command (``args.run``): its exit code, or 1 after printing what went wrong.

    A user's error is one line; any other exception is a bug, printed with
    its traceback and a request to report it. ``--debug`` raises either.
    """
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader that is gone is found here, not at exit
        return code
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:
        if args.debug:
            raise
        # A user's file or disk (rights, space, size limits, odd files) is named with the cause, in one line.
        line = os_error_line(exc)
        missing = missing_extra(exc, f"lookalike {args.command}")
        if missing is not None:
            print(f"lookalike: error: {missing}", file=sys.stderr)
        elif line is not None or isinstance(exc, (LookalikeError, *_PATH_ERRORS)):
            print(f"lookalike: error: {in_cli_words(line or str(exc))}", file=sys.stderr)
        else:
            traceback.print_exc()
            print(
                "lookalike: internal error: this is a bug in lookalike, not in what you asked it to do; please "
                f"report it with the traceback above and the command you ran (lookalike {lk.__version__})",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
