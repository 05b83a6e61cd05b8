"""One-call jobs: open or build the models they need with the facade, then hand their references to an operation.

``lk.match`` (two sets -> pairs, :mod:`lookalike.operations.match`), ``lk.evaluate`` and ``lk.evaluate_pairs``
(a labelled set or judged pairs -> a report, :mod:`lookalike.operations.evaluate`). The operations never
import the facade; these jobs are where folders, tables and saved models become models.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lookalike.embed.extractor import BATCH_SIZE
from lookalike.embed.registry import DEFAULT_MODEL, ModelSpec
from lookalike.errors import InvalidArgument, InvalidType
from lookalike.index import check_metric
from lookalike.index.metrics import DEFAULT_METRIC
from lookalike.ingest.sources import list_image_files, read_table
from lookalike.model import ImageSimilarityModel, create, load_model
from lookalike.operations.evaluate import EvaluationReport, PairReport, evaluate_model, score_judged_pairs
from lookalike.operations.match import check_limits, match_references
from lookalike.store import storage
from lookalike.store.results import check_output

__all__ = ["evaluate", "evaluate_pairs", "match"]


def match(
    a: Any,
    b: Any,
    threshold: float | None = None,
    k: int | None = None,
    metric: str | None = None,
    model: str | os.PathLike | ModelSpec | None = "auto",
    label_a: str | None = None,
    label_b: str | None = None,
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    path: str | os.PathLike | None = None,
    one_to_one: bool = False,
) -> pd.DataFrame | Path:
    """Pairs (a, b) of images from two sets that look alike: all pairs within ``threshold`` and/or b's ``k`` nearest per a.

    With neither ``threshold`` nor ``k``, pairs within the threshold measured for
    the network, descriptor and metric (dedup's default, see
    :func:`lookalike.dedup.default_threshold`).

    Parameters
    ----------
    a, b : folder, glob, list of paths, table file, pandas.DataFrame, 2-D array, saved model path, or ImageSimilarityModel
        The two sets: anything :func:`lookalike.create` accepts (a 2-D numpy
        array is taken as embeddings), a model directory saved with
        ``model.save``, or a model object. Image sets are embedded with the
        embedding cache, so matching the same folder again is fast.
    threshold : float, optional
        Largest distance of a pair, in ``metric`` (all metrics are distances:
        smaller is closer; ``dot``'s is minus the dot product). Seed 004's
        cosine *similarity* 0.845 is ``threshold=0.155`` with ``metric="cosine"``.
        Default, without ``k``: the measured one (a clear error where none was).
    k : int, optional
        Keep at most the ``k`` nearest b images of each a image. With
        ``threshold`` too, both conditions hold.
    metric : {"euclidean", "cosine", "dot"}, optional
        Used for both sets. Default: the metric of the model given as ``a``
        (or else ``b``), so that a pair's distance is the one ``query`` and
        ``dedup`` show on that model; for sets built here, ``"euclidean"``,
        as ``create`` and ``lookalike index``.
    model : str, path, ModelSpec or None, default "auto"
        Network that embeds the image sets: ``"auto"`` takes the one a model
        input was built with, else ``"efficientnet_lite0"``; None means the
        inputs are precomputed embeddings.
    label_a, label_b : str, optional
        Column naming the images of a DataFrame/table input (as ``create``'s
        ``label``); row numbers when None.
    batch_size : int, default 16
    verbose : bool, default True
        Progress bars while embedding.
    path : str or path, optional
        A ``.parquet`` or ``.csv`` file to stream the pairs to, one block of
        A at a time, instead of returning them: the pairs are never all in
        memory, and the file appears only when complete.
    one_to_one : bool, default False
        Each image in at most one pair (an edit to its original, a product
        photo to its catalogue entry): of the candidate pairs (within
        ``threshold``, among the ``k`` nearest), the closest pair is taken
        first, then the closest of those left whose images are both still
        free, and so on; every taken pair is the nearest free choice for
        both of its images (mutual nearest neighbours, applied in turn). The
        images left without a pair follow as rows with no partner
        (``b_label`` or ``a_label`` missing, ``distance`` NaN).

    Returns
    -------
    pandas.DataFrame or pathlib.Path
        ``a_label, b_label, distance`` (float64), ordered by a, then distance,
        then b; plus ``a_path, b_path`` when the sets are image files; its
        ``attrs["metric"]`` names the metric. With ``path``, that table is in
        the file, each row also naming its ``metric``, and its path is returned.

    Raises
    ------
    ValueError
        Neither ``threshold`` nor ``k`` where no threshold was measured; a bad
        value; sets embedded by different networks or of different dimensions.

    Examples
    --------
    >>> import lookalike as lk
    >>> pairs = lk.match("shop_photos/", "catalogue/", threshold=0.15, verbose=False)  # doctest: +SKIP
    >>> pairs.columns.tolist()  # doctest: +SKIP
    ['a_label', 'b_label', 'distance', 'a_path', 'b_path']
    """
    metric = _match_metric(a, b, metric)
    check_limits(threshold, k, metric)  # before any embedding
    if path is not None:
        path = check_output(path)
    model_a, model_b = _match_sets(a, b, model, metric, (label_a, label_b), batch_size, verbose)
    return match_references(model_a.core, model_b.core, metric, threshold, k, path, one_to_one)


def _match_metric(a: Any, b: Any, metric: str | None) -> str:
    """The metric asked for; else a saved model's (a's first, then b's); else create's default."""
    if metric is not None:
        return check_metric(metric)
    for source in (a, b):
        if isinstance(source, ImageSimilarityModel):
            return source.metric
        if storage.is_saved_model(source):
            return check_metric(storage.read_model_manifest(source).metric)
    return DEFAULT_METRIC


def _match_sets(
    a: Any, b: Any, network: Any, metric: str, labels: tuple[str | None, str | None], batch_size: int, verbose: bool
) -> tuple[ImageSimilarityModel, ImageSimilarityModel]:
    """Each input as a model: given, loaded from disk, or created (embedded with the same network)."""
    built: dict[str, ImageSimilarityModel] = {}
    for name, source in (("a", a), ("b", b)):
        if isinstance(source, ImageSimilarityModel):
            built[name] = source
        elif storage.is_saved_model(source):
            built[name] = load_model(source)
    if isinstance(network, str) and network == "auto":
        specs = [m.core.spec for m in built.values() if m.embedding_model is not None]
        network = specs[0] if specs else DEFAULT_MODEL
    for (name, source), label in zip((("a", a), ("b", b)), labels, strict=True):
        if name not in built:
            embeddings = isinstance(source, np.ndarray) and source.ndim == 2
            try:
                built[name] = create(
                    source,
                    label=label,
                    model=None if embeddings else network,
                    metric=metric,
                    batch_size=batch_size,
                    verbose=verbose,
                )
            except ValueError as exc:
                raise InvalidArgument(f"set {name}: {exc}") from exc
    return built["a"], built["b"]


def evaluate(
    dataset: str | os.PathLike | pd.DataFrame,
    group: str | None = None,
    model: str | os.PathLike | None = DEFAULT_MODEL,
    metric: str = "euclidean",
    k: int | Iterable[int] = (1, 4, 10),
    verbose: bool = True,
    train: str | os.PathLike | pd.DataFrame | None = None,
    verify: Any = False,
    shortlist: int = 20,
    **create_kwargs: Any,
) -> EvaluationReport:
    """Embed a labelled image set and measure retrieval quality: precision@k, recall@k, mAP, N-S.

    The images are embedded and indexed as :func:`lookalike.create` does
    (with the same cache), then scored by :func:`evaluate_model`: every image
    queries all the others, and the other images of its group are the right
    answers.

    Parameters
    ----------
    dataset : folder path or pandas.DataFrame
        A folder whose immediate sub-folders are the groups (images found
        recursively inside each), or a table with an image column and a group
        column.
    group : str, optional
        The group column of a DataFrame ``dataset`` (required then; not used with a folder).
    model : str or path, default "efficientnet_lite0"
        The embedding network, as for :func:`lookalike.create`.
    metric : {"euclidean", "cosine", "dot"}, default "euclidean"
    k : int or sequence of int, default (1, 4, 10)
        Cut-offs for precision@k and recall@k.
    verbose : bool, default True
        Show progress bars.
    train : folder path or pandas.DataFrame, optional
        Other labelled images (same form as ``dataset``, same ``group``
        column): learn an LDA projection from their groups (as
        ``create(train_label=...)`` does) and measure it on ``dataset``,
        which takes no part in the training.
    verify, shortlist
        Re-rank by geometric verification: see :func:`evaluate_model`.
    **create_kwargs
        Passed to :func:`lookalike.create` (``descriptor``, ``precision``,
        ``feature``, ``label``, ``batch_size``, ``cache``, ``preprocessing``).

    Returns
    -------
    EvaluationReport
        ``print(report)`` shows the metrics; ``report.to_html("report.html")``
        shows the worst queries with their results.

    Examples
    --------
    >>> import lookalike as lk
    >>> report = lk.evaluate("samples/clothing", verbose=False)
    >>> sorted(report.metrics)[:3]
    ['N-S', 'mAP', 'precision@1']
    """
    if isinstance(dataset, ImageSimilarityModel):
        raise InvalidType("evaluate takes images; to score a model already built, use evaluate_model(model, groups)")
    table, group_column = _labelled_table(dataset, group, "dataset")
    groups = table[group_column].to_numpy()
    if train is not None:
        if "projection" in create_kwargs or "train_label" in create_kwargs:
            raise InvalidArgument("train= learns the projection: do not also pass projection= or train_label=")
        train_table, train_group = _labelled_table(train, group, "train set")
        options = {key: value for key, value in create_kwargs.items() if key != "label"}
        if isinstance(train, (str, os.PathLike)):
            options["feature"] = "path"  # a folder's table: never take the group names for images
        learned = create(train_table, model=model, metric=metric, verbose=verbose, train_label=train_group, **options)
        create_kwargs = {**create_kwargs, "projection": learned.projection}
    # The group column is withheld so that its strings are never mistaken for image paths.
    built = create(table.drop(columns=[group_column]), model=model, metric=metric, verbose=verbose, **create_kwargs)
    label = create_kwargs.get("label")
    # Unreadable images are left out of the model: find the table row of each reference kept.
    kept = built.labels if label is None else pd.Index(table[label]).get_indexer(built.labels)
    return evaluate_model(built, groups[kept], k=k, verbose=verbose, verify=verify, shortlist=shortlist)


def _folder_table(folder: Path) -> pd.DataFrame:
    """``path, group`` for every image under ``folder``: the group is its top-level sub-folder."""
    files = list_image_files(folder, recursive=True)
    parts = [f.relative_to(folder).parts for f in files]
    grouped = [(str(f), p[0]) for f, p in zip(files, parts, strict=True) if len(p) > 1]
    loose = len(files) - len(grouped)
    if loose:
        warnings.warn(
            f"{loose} images directly in {folder} belong to no group (groups are its sub-folders): left out",
            RuntimeWarning,
            stacklevel=3,
        )
    if not grouped:
        raise InvalidArgument(
            f"no images in sub-folders of {folder}: evaluate needs one sub-folder of images per group"
        )
    return pd.DataFrame(grouped, columns=["path", "group"])


def _labelled_table(
    dataset: str | os.PathLike | pd.DataFrame, group: str | None, what: str
) -> tuple[pd.DataFrame, str]:
    """(table, group column) of a folder of group sub-folders or of a DataFrame with a group column."""
    if isinstance(dataset, (str, os.PathLike)):
        if group is not None:
            raise InvalidArgument("group= names a DataFrame column; a folder's groups are its sub-folders")
        folder = Path(dataset)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {dataset}")
        return _folder_table(folder), "group"
    if isinstance(dataset, pd.DataFrame):
        if group is None:
            raise InvalidArgument(
                f"pass group= to name the DataFrame's group column (columns: {list(dataset.columns)})"
            )
        if group not in dataset.columns:
            raise InvalidArgument(
                f"group column {group!r} is not in the {what}; its columns are {list(dataset.columns)}"
            )
        table = dataset.reset_index(drop=True)
        if table[group].isna().any():
            raise InvalidArgument(f"group column {group!r} has missing values")
        return table, group
    raise InvalidType(
        f"{what} must be a folder of group sub-folders or a pandas DataFrame, got {type(dataset).__name__}"
    )


def evaluate_pairs(
    pairs: str | os.PathLike | pd.DataFrame,
    model: str | os.PathLike = DEFAULT_MODEL,
    metric: str = "cosine",
    threshold: float | None = None,
    verbose: bool = True,
    **create_kwargs: Any,
) -> PairReport:
    """Score an embedding network on pairs a person judged: duplicates or not (``lookalike decide --export``).

    Parameters
    ----------
    pairs : table file or pandas.DataFrame
        Columns ``a``, ``b`` (image paths) and ``duplicate`` (bool); an ``a_now``
        column (where a discarded file was moved) is read instead of ``a``.
    model, metric, **create_kwargs
        The network and how to embed, as for :func:`lookalike.create`.
    threshold : float, optional
        The distance to report precision and recall at; default: the network's measured dedup threshold.

    Examples
    --------
    >>> report = lk.evaluate_pairs("judged.csv", model="efficientnet_lite0")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    table = pairs if isinstance(pairs, pd.DataFrame) else read_table(pairs, ("a", "b", "a_now"))
    missing = [c for c in ("a", "b", "duplicate") if c not in table.columns]
    if missing:
        raise InvalidArgument(f"judged pairs need the columns a, b and duplicate; missing {missing}")
    first = table["a_now"].fillna(table["a"]) if "a_now" in table.columns else table["a"]
    judged = table["duplicate"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes")).to_numpy(bool)
    files = pd.Index(pd.concat([first, table["b"]]).astype(str).unique())
    built = create(list(files), model=model, metric=metric, verbose=verbose, method="brute_force", **create_kwargs)
    return score_judged_pairs(built.core, table, first, judged, threshold)
