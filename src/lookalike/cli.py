"""The ``lookalike`` command: a thin shell over the Python API.

User errors (a :class:`~lookalike.errors.LookalikeError`, or an ``OSError``
about the user's files: a path that does not exist or cannot be opened, a
full disk, a file size limit) print one line and exit 1; ``--debug`` shows
the traceback instead. Warnings print one line each. Any other exception
is a bug in lookalike: it prints its traceback and asks for a report, and
also exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import traceback
import warnings
from pathlib import Path

import pandas as pd

import lookalike as lk
from lookalike import dedup, storage
from lookalike.decisions import DamagedDecisions, Decisions, set_aside_damaged
from lookalike.dedup.tiers import COPY_TIERS, check_tiers
from lookalike.embed.extractor import BATCH_SIZE
from lookalike.embed.registry import DEFAULT_MODEL, PRECISIONS, get_spec
from lookalike.engines import RayEngine
from lookalike.errors import InvalidArgument, LookalikeError, os_error_line
from lookalike.files import locked
from lookalike.index import METRICS
from lookalike.ingest.names import escaped_frame, text_column
from lookalike.ingest.options import add_download_options, download_options
from lookalike.ingest.report import summarize_failures, write_report
from lookalike.ingest.sources import is_embeddings_file
from lookalike.layout import MAP_FILE, METHODS
from lookalike.results import STREAM_SUFFIXES, TABLE_SUFFIXES, check_output, count_rows, write_table

DESCRIPTOR_HELP = "'gem' (the default), 'plain', 'fast', 'best' or a JSON object of options (see docs/quality.md)"
PRECISION_HELP = f"{' or '.join(PRECISIONS)} or auto (int8 where the CPU has VNNI); default: the network's own"
#: OS errors about the paths a user named (a missing query image, an output folder that exists...).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def _print_table(table: pd.DataFrame, as_json: bool) -> None:
    table = escaped_frame(table)  # file names that are not UTF-8 are shown with \xNN escapes
    if as_json:
        print(table.to_json(orient="records"))
    elif table.empty:
        print("(no results)")
    else:
        print(table.to_string(index=False))


def _updated_model(args: argparse.Namespace, output: Path) -> lk.ImageSimilarityModel | None:
    """The model already at ``output`` synced in place with the sources, or None when it must be built afresh."""
    if args.rebuild or args.engine != "local" or not storage.is_model_dir(output):
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
            .with_descriptor(_descriptor_option(args.descriptor) or record.get("descriptor") or "plain")
            .with_precision(args.precision or record.get("precision") or "fp32")
        )
        if asked.fingerprint != record.get("fingerprint"):
            return None
    sources = args.sources if len(args.sources) > 1 else args.sources[0]
    model.sync(sources, verbose=not args.quiet, download=download_options(args))
    return model


def cmd_index(args: argparse.Namespace) -> int:
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
        stats = model.build_stats
        if embeddings_only:
            print(f"indexed {summary['num_references']} embeddings in {summary['training_time']:.1f} s -> {output}")
            return 0
        print(
            f"indexed {summary['num_references']} images ({stats.get('embedded', 0)} embedded, "
            f"{stats.get('from_cache', 0)} from cache, {summary['num_failures']} skipped) "
            f"with {summary['model']} in {summary['training_time']:.1f} s -> {output}"
        )
        if "added" in stats:
            print(f"updated in place: {stats['added']} added, {stats['removed']} removed, {stats['changed']} changed")
        for row in model.failures.head(10).itertuples():
            print(f"  skipped {row.source}: {row.reason}", file=sys.stderr)
        if len(model.failures) > 10:
            print(f"  ... and {len(model.failures) - 10} more (--report lists them all)", file=sys.stderr)
        if report:
            print(f"failure report: {report}", file=sys.stderr)
    return 0


def _with_paths(model: lk.ImageSimilarityModel, table: pd.DataFrame, column: str, as_json: bool) -> pd.DataFrame:
    """Add the reference path next to its label, which is what a person wants to see."""
    if model.feature in model.references.columns and not as_json:
        paths = pd.Series(model.references[model.feature].to_numpy(), index=model.labels)
        table = table.assign(path=paths.reindex(table[column].to_numpy()).to_numpy())
    return table


def cmd_query(args: argparse.Namespace) -> int:
    model = lk.load_model(args.model)
    if args.text is not None:
        if args.images:
            raise InvalidArgument("give query images or --text, not both")
        results = model.query_text(args.text, k=args.k, radius=args.radius)
        _print_table(_with_paths(model, results, "reference_label", args.json), args.json)
        return 0
    if not args.images:
        raise InvalidArgument("give one or more query images, or --text 'a description'")
    from lookalike.verify import Verifier

    # The label column is never taken for the image column: the paths go in both.
    names = [os.fspath(p) for p in args.images]
    queries = pd.DataFrame({"image": text_column(names), "query": text_column(names)})
    for path in args.images:
        if not Path(path).exists():
            raise FileNotFoundError(f"query image not found: {path}")
    results = model.query(
        queries,
        label="query",
        k=args.k,
        radius=args.radius,
        verbose=not args.quiet,
        verify=Verifier(method=args.verify, min_inliers=args.min_inliers) if args.verify else False,
        shortlist=args.shortlist,
    )
    _print_table(_with_paths(model, results, "reference_label", args.json), args.json)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, TABLE_SUFFIXES)
    model = lk.load_model(args.model)
    if args.output and args.output.suffix.lower() in STREAM_SUFFIXES:  # streamed block by block
        path = model.similarity_graph(
            k=args.k,
            radius=args.radius,
            include_self_edges=args.include_self_edges,
            output_type="table",
            path=args.output,
        )
        print(f"wrote {count_rows(path)} edges over {len(model.labels)} images to {path}")
        return 0
    edges = model.similarity_graph(
        k=args.k, radius=args.radius, include_self_edges=args.include_self_edges, output_type="table"
    )
    if args.output:
        write_table(args.output, edges)
        print(f"wrote {len(edges)} edges over {len(model.labels)} images to {args.output}")
    else:
        _print_table(edges, args.json)
    return 0


def cmd_map(args: argparse.Namespace) -> int:
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
    checked = storage.verify(args.model) if args.verify else None  # a mismatch raises ModelFormatError
    model = lk.load_model(args.model)
    if args.json:
        print(json.dumps({**model.summary(output="dict"), **({"verified": checked} if checked else {})}))
        return 0
    model.summary()
    if checked and checked["files"]:
        print(f"verified: {checked['files']} files, {checked['bytes']:,} bytes, every SHA-256 matches")
    elif checked:
        print("verified: nothing to check, a format-1 model has no checksums (save it again to record them)")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, TABLE_SUFFIXES)  # before embedding anything
    options = dict(
        threshold=args.threshold, k=args.k, metric=args.metric, verbose=not args.quiet, one_to_one=args.one_to_one
    )
    if args.output and args.output.suffix.lower() in STREAM_SUFFIXES:  # streamed block by block
        path = lk.match(args.a, args.b, path=args.output, **options)
        print(f"wrote {count_rows(path)} pairs to {path}")
        return 0
    pairs = lk.match(args.a, args.b, **options)
    if args.output:
        write_table(args.output, pairs)
        print(f"wrote {len(pairs)} pairs to {args.output}")
    else:
        _print_table(pairs, args.json)
    return 0


def _dedup_source(source: str, metric: str, verbose: bool) -> tuple[lk.ImageSimilarityModel, Path]:
    """``(model, root)`` for a dedup of a folder (indexed now, with the embedding cache) or of a saved model.

    ``root`` is the folder actions may touch: the folder itself, or for a
    saved model the deepest folder holding all its images.
    """
    path = Path(source)
    if storage.is_model_dir(path):
        model = lk.load_model(path)
        if model.feature not in model.references.columns:
            return model, path
        folders = {os.path.dirname(os.path.abspath(p)) for p in model.references[model.feature]}
        return model, Path(os.path.commonpath(sorted(folders)))
    if not path.is_dir():
        raise NotADirectoryError(f"dedup needs a folder of images or a saved model, and {source} is neither")
    return lk.create(str(path), metric=metric, verbose=verbose), path


def _review_model(args: argparse.Namespace) -> Path:
    """The saved model a review works on: the source itself, or the folder's model (made now, or brought up to date)."""
    if storage.is_model_dir(args.source):
        return args.source
    if not args.source.is_dir():
        raise NotADirectoryError(f"dedup needs a folder of images or a saved model, and {args.source} is neither")
    target = args.save or args.source.resolve().parent / f"{args.source.resolve().name}.lookalike"
    if storage.is_model_dir(target):
        model = lk.load_model(target)
        changes = model.sync(str(args.source), verbose=not args.quiet)
        print(f"{target}: {changes['added']} added, {changes['removed']} removed, {changes['changed']} changed")
    else:
        model = lk.create(str(args.source), metric=args.metric, verbose=not args.quiet)
    model.save(target)
    return target


def cmd_dedup(args: argparse.Namespace) -> int:
    if args.review:
        if args.delete:
            raise InvalidArgument("--review moves discarded files (with undo), it never deletes: drop --delete")
        _serve(args, _review_model(args), view="duplicates")
        return 0
    model, root = _dedup_source(args.source, metric=args.metric, verbose=not args.quiet)
    if args.calibrate:
        threshold = args.threshold if args.threshold is not None else dedup.default_threshold(model.core)
        calibration = model.calibrate_duplicates()
        _print_table(calibration.table(), args.json)
        print(calibration.summary(threshold))
        return 0
    acted = check_tiers(args.act_on.split(","), COPY_TIERS, "--act-on")
    duplicates = model.find_duplicates(
        threshold=args.threshold, keep=args.keep, k=args.k, act_on=acted, keep_in=args.keep_in
    )
    if args.report:
        write_table(args.report, duplicates)
    if args.json:
        print(escaped_frame(duplicates).to_json(orient="records"))
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
    decisions = Decisions()
    keepers = dict(
        zip(duplicates.loc[duplicates["keeper"], "group"], duplicates.loc[duplicates["keeper"], "path"], strict=True)
    )
    for row in duplicates[duplicates["action"] == "discard"].itertuples():
        decisions.discard(row.path, keepers[row.group])
    saved = args.source if storage.is_model_dir(args.source) else None
    # An earlier dedup (or apply) cut short is finished first: nothing is left in two places or half copied.
    for manifest in model.interrupted_applies(args.move_to):
        _carried_out(lambda manifest=manifest: model.resume_decisions(manifest, path=saved), f" (finishing {manifest})")
    model.decisions.merge(decisions)
    _carried_out(lambda: model.apply_decisions(args.move_to, path=saved, mode=mode))
    return 0


def _holding(model: Path | str):
    """The lock of a saved model's folder (nothing for a path that is not one): held across load, change and save,
    so that two commands changing one model take turns and each starts from what the other saved."""
    return locked(model) if storage.is_model_dir(Path(model)) else contextlib.nullcontext()


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
    from lookalike import moves

    folder = moves.read_manifest(args.manifest).get("model")
    if folder and storage.is_model_dir(Path(folder)):
        with _holding(folder):
            model = lk.load_model(folder)
            report = _carried_out(
                lambda: model.undo_moves(args.manifest, path=folder, verbose=False), f"; added back to {folder}"
            )
    else:
        report = _carried_out(lambda: moves.undo(args.manifest))
    return 0 if not report.skipped else 1


def cmd_decide(args: argparse.Namespace) -> int:
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
            "nothing to record: give --keep LABEL, --discard LABEL KEEPER or --not-duplicate A B (or --export)"
        )
    if args.export:
        pairs = model.decisions.pairs()
        write_table(args.export, pairs)
        print(
            f"wrote {len(pairs)} labelled pairs to {args.export} (score a network on them: lookalike evaluate --pairs)"
        )
    print(f"{len(model.decisions)} decisions in {args.model}")
    return 0


def _label_parser(model: lk.ImageSimilarityModel):
    """Labels typed on the command line are text: row-number labels are read back as numbers."""

    def number(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise InvalidArgument(f"this model's labels are row numbers, got {text!r}") from None

    return number if model.label is None else str


def discarded_folder(model: Path) -> Path:
    """Where the explorer moves discarded files by default: beside the model's folder."""
    return model.resolve().parent / f"{model.resolve().name}-discarded"


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.max_upload_mb > 0 or math.isinf(args.max_upload_mb):
        raise InvalidArgument(f"--max-upload-mb must be a positive number of megabytes, got {args.max_upload_mb:g}")
    _serve(args, args.model, view=None)
    return 0


def _serve(args: argparse.Namespace, model: Path, view: str | None) -> None:
    from lookalike.server.runner import serve

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
    from lookalike.server.matching import MatchedSet

    if threshold is None:
        threshold = dedup.default_threshold(model.core)
    if storage.is_model_dir(source):
        other = lk.load_model(source)
    else:
        spec = model.core.spec
        if spec is None:
            raise InvalidArgument(
                "this model holds precomputed embeddings: --match needs a saved model of the same kind"
            )
        other = lk.create(
            str(source),
            model=spec,
            descriptor=spec.descriptor,
            metric=model.metric,
            projection=model.projection,
            verbose=not quiet,
        )
    pairs = lk.match(model, other, threshold=threshold, metric=model.metric, one_to_one=True, verbose=not quiet)
    return MatchedSet(other, pairs, threshold)


def cmd_models(args: argparse.Namespace) -> int:
    from lookalike.embed import zoo

    if args.action == "fetch":
        if not args.name:
            raise InvalidArgument("usage: lookalike models fetch NAME")
        paths = zoo.fetch(args.name)
        print(
            json.dumps({"name": args.name, "files": [str(p) for p in paths]})
            if args.json
            else f"{args.name}: {len(paths)} files verified in {zoo.hub_cache()}"
        )
        return 0
    table = pd.DataFrame(zoo.list_models())
    if not args.json:
        table = table.assign(
            cached=table["cached"].map({True: "yes", False: "no"}), text=table["text"].map({True: "text", False: ""})
        )
    _print_table(table.drop(columns=["source"]) if not args.json else table, args.json)
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
            metric=args.metric or "cosine",
            threshold=args.threshold,
            verbose=not args.quiet,
            descriptor=_descriptor_option(args.descriptor),
            precision=args.precision,
        )
        print(json.dumps(pairs.metrics) if args.json else pairs)
        return 0
    report = lk.evaluate(
        args.folder,
        model=args.model,
        metric=args.metric or "euclidean",
        k=args.k,
        verbose=not args.quiet,
        descriptor=_descriptor_option(args.descriptor),
        precision=args.precision,
        train=args.train,
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


def _add_serve_options(command: argparse.ArgumentParser, quiet: bool = True) -> None:
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    command.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    command.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (needed to bind beyond loopback)")
    command.add_argument("--cors", action="append", metavar="ORIGIN", help="allow API calls from this origin")
    command.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (default: %(default)s)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find similar images.")
    parser.add_argument("--version", action="version", version=f"lookalike {lk.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_AnyOrder)

    index = commands.add_parser("index", help="embed and index images into a model directory")
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
    index.add_argument("--precision", help=PRECISION_HELP)
    index.add_argument("--metric", default="euclidean", choices=METRICS)
    index.add_argument("--descriptor", help=DESCRIPTOR_HELP)
    index.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help=f"images per inference call (default {BATCH_SIZE})"
    )
    index.add_argument(
        "--method", default="auto", help="auto (default), brute_force, hnsw, ivf or a faiss factory string"
    )
    index.add_argument("--rebuild", action="store_true", help="rebuild OUTPUT from scratch instead of updating it")
    index.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    index.add_argument("--address", help="Ray cluster to join with --engine ray (ray://HEAD:10001, auto)")
    index.add_argument("--work-dir", help="--engine ray: folder or s3:// URI for the shards (shared by all nodes)")
    index.add_argument(
        "--report",
        nargs="?",
        const=True,
        type=Path,
        help="write every skipped input (id, source, kind, reason) as CSV to REPORT (default: OUTPUT.failures.csv)",
    )
    index.set_defaults(run=cmd_index)

    query = commands.add_parser("query", help="find the references most like some images")
    query.add_argument("model", type=Path, help="a model directory made by 'lookalike index'")
    query.add_argument("images", nargs="*", type=Path)
    query.add_argument("--text", help="find images matching this description (models with a text tower: clip-vit-b-32)")
    query.add_argument("-k", type=int, default=5, help="neighbours per image (default: %(default)s)")
    query.add_argument("--radius", type=float, help="only neighbours at most this far")
    query.add_argument(
        "--verify",
        nargs="?",
        const="sift",
        choices=("sift", "orb"),
        help="re-rank the shortlist by geometric verification (local features + RANSAC; lookalike[verify]); "
        "adds an inliers column. Features: sift (default) or orb (faster)",
    )
    query.add_argument("--shortlist", type=int, default=20, help="with --verify: candidates checked per image")
    query.add_argument("--min-inliers", type=int, default=15, help="with --verify: inliers that verify a match")
    query.set_defaults(run=cmd_query)

    graph = commands.add_parser("graph", help="every reference's k nearest neighbours (the similarity graph)")
    graph.add_argument("model", type=Path)
    graph.add_argument("-k", type=int, default=5)
    graph.add_argument("--radius", type=float)
    graph.add_argument("--include-self-edges", action="store_true")
    graph.add_argument("-o", "--output", type=Path, help="edges file: .parquet, .csv, .json or .jsonl")
    graph.set_defaults(run=cmd_graph)

    map_cmd = commands.add_parser("map", help="compute and save the 2-D map the explorer shows (t-SNE, or PCA)")
    map_cmd.add_argument("model", type=Path, help="a model saved by lookalike index")
    map_cmd.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="tsne keeps neighbours near each other (needs lookalike[map]); pca is fast; auto: tsne when installed",
    )
    map_cmd.set_defaults(run=cmd_map)

    info = commands.add_parser("info", help="describe a saved model")
    info.add_argument("model", type=Path)
    info.add_argument(
        "--verify",
        action="store_true",
        help="read every byte and check it against the checksums saved with the model (a load checks large files by samples)",
    )
    info.set_defaults(run=cmd_info)

    match = commands.add_parser("match", help="pairs of look-alike images between two sets (folders or models)")
    match.add_argument("a", help="set A: folder, glob, table file or saved model")
    match.add_argument("b", help="set B: folder, glob, table file or saved model")
    match.add_argument("--threshold", type=float, help="largest distance of a pair (cosine: 1 - similarity)")
    match.add_argument("-k", type=int, help="at most the k nearest B images per A image")
    match.add_argument("--metric", default="cosine", choices=METRICS)
    match.add_argument(
        "--one-to-one",
        action="store_true",
        help="each image in one pair at most, closest first; the unmatched of each side follow",
    )
    match.add_argument("-o", "--output", type=Path, help="pairs file: .parquet, .csv, .json or .jsonl")
    match.set_defaults(run=cmd_match)

    dedup_cmd = commands.add_parser("dedup", help="find near-duplicate images; report (default), move or delete them")
    dedup_cmd.add_argument("source", type=Path, help="a folder of images (indexed, with the cache) or a saved model")
    dedup_cmd.add_argument("--threshold", type=float, help="largest distance of two duplicates (default: measured)")
    dedup_cmd.add_argument("--keep", default="resolution", choices=dedup.POLICIES, help="keeper policy")
    dedup_cmd.add_argument("--metric", default="cosine", choices=METRICS, help="for a folder (a model keeps its own)")
    dedup_cmd.add_argument("-k", type=int, default=10, help="neighbours looked at per image (default: %(default)s)")
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
        default=",".join(COPY_TIERS),
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
    dedup_cmd.set_defaults(run=cmd_dedup)

    apply = commands.add_parser(
        "apply", help="move the files marked discarded out of a saved model's folders (an undo manifest is written)"
    )
    apply.add_argument("model", type=Path, help="a saved model with discard decisions")
    action = apply.add_mutually_exclusive_group()
    action.add_argument("--move-to", type=Path, help="where discarded files go (default: MODEL-discarded beside it)")
    action.add_argument(
        "--trash", action="store_true", help="move them to the system trash instead (Linux; lookalike undo restores)"
    )
    action.add_argument("--permanently", action="store_true", help="delete them for good (no undo; needs --yes)")
    apply.add_argument("--yes", action="store_true", help="confirm --permanently")
    apply.add_argument("--resume", type=Path, metavar="MANIFEST", help="finish an apply that was interrupted")
    apply.set_defaults(run=cmd_apply)

    undo = commands.add_parser("undo", help="put back the files an apply moved, and add them back to the model")
    undo.add_argument("manifest", type=Path, help="the manifest an apply wrote (lookalike-moves-*.json)")
    undo.set_defaults(run=cmd_undo)

    decide = commands.add_parser("decide", help="record a duplicate decision in a saved model (honoured by dedup)")
    decide.add_argument("model", type=Path, help="a model saved by lookalike index")
    decide.add_argument("--keep", metavar="LABEL", action="append", default=[], help="keep this reference in its group")
    decide.add_argument(
        "--not-duplicate", nargs=2, metavar=("A", "B"), action="append", default=[], help="never link A and B"
    )
    decide.add_argument(
        "--discard",
        nargs=2,
        metavar=("LABEL", "KEEPER"),
        action="append",
        default=[],
        help="LABEL is a duplicate of KEEPER: lookalike apply moves it away",
    )
    decide.add_argument("--export", type=Path, help="write the judged pairs (a, b, duplicate) to .csv/.parquet/.json")
    decide.set_defaults(run=cmd_decide)

    serve = commands.add_parser("serve", help="web explorer and REST API for a model (127.0.0.1 by default)")
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
    serve.set_defaults(run=cmd_serve)

    models = commands.add_parser("models", help="list the embedding models (size, cached) or fetch one")
    models.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    models.add_argument("name", nargs="?", help="model to fetch")
    models.set_defaults(run=cmd_models)

    evaluate = commands.add_parser(
        "evaluate", help="retrieval quality on a folder of group sub-folders: precision@k, recall@k, mAP, N-S"
    )
    evaluate.add_argument("folder", type=Path, nargs="?", help="a folder whose sub-folders are the groups (classes)")
    evaluate.add_argument(
        "--pairs", type=Path, help="score on judged pairs instead (a, b, duplicate: lookalike decide --export)"
    )
    evaluate.add_argument("--threshold", type=float, help="--pairs: distance to report precision and recall at")
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help="embedding network (default: %(default)s)")
    evaluate.add_argument("--precision", help=PRECISION_HELP)
    evaluate.add_argument("--metric", choices=METRICS, help="default: euclidean; cosine with --pairs")
    evaluate.add_argument("--descriptor", help=DESCRIPTOR_HELP)
    evaluate.add_argument("--train", type=Path, help="learn an LDA projection from this folder of class sub-folders")
    evaluate.add_argument("-k", type=int, nargs="+", default=[1, 4, 10], help="cut-offs (default: 1 4 10)")
    evaluate.add_argument("--html", type=Path, help="write a self-contained HTML report of the worst queries here")
    evaluate.add_argument("--worst", type=int, default=20, help="queries shown in the HTML report (default: 20)")
    evaluate.set_defaults(run=cmd_evaluate)

    export = commands.add_parser("export", help="write a model for apps: ONNX and/or Core ML, top-k inside")
    export.add_argument("model", type=Path, help="a saved model directory")
    export.add_argument("--onnx", type=Path, help="ONNX file to write (ONNX Runtime: mobile, web, any language)")
    export.add_argument("--coreml", type=Path, help=".mlpackage to write (iOS/macOS apps; needs lookalike[coreml])")
    export.add_argument("-k", type=int, default=5, help="neighbours returned per image (default: %(default)s)")
    export.set_defaults(run=cmd_export)

    for sub in (index, query, graph, map_cmd, info, match, dedup_cmd, models, evaluate, export):
        sub.add_argument("--json", action="store_true", help="machine-readable JSON output")
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


def run(args: argparse.Namespace) -> int:
    """Run a parsed command (``args.run``): its exit code, or 1 after printing what went wrong.

    A user's error is one line; any other exception is a bug, printed with
    its traceback and a request to report it. ``--debug`` raises either.
    """
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        # A user's file or disk (rights, space, size limits, odd files) is named with the cause, in one line.
        line = os_error_line(exc)
        if line is not None or isinstance(exc, (LookalikeError, *_PATH_ERRORS)):
            print(f"lookalike: error: {line or exc}", file=sys.stderr)
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
