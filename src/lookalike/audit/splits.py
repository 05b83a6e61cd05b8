"""Which split (train, validation, test) and which class each reference belongs to.

From columns of the reference table when named, else from the folders the
photos sit in: a top-level folder named like a split (``train/``, ``val/``,
``valid/``, ``validation/``, ``test/``) is the split, and the folder below it
(or, without splits, the photo's own folder) is the class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pandas as pd

from lookalike.errors import InvalidArgument
from lookalike.references.core import References

__all__ = ["SPLIT_NAMES", "Groups", "groups_of"]

#: Folder names read as splits (compared without case).
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


@dataclass
class Groups:
    """Each reference's class and split as integer codes (-1: none), with the names the codes stand for.

    ``classes``/``splits`` are None when the collection has no classes (or no splits) at all.
    """

    classes: np.ndarray | None
    class_names: list[str]
    splits: np.ndarray | None
    split_names: list[str]
    source: str  # where they came from, for the report: "columns", "folders" or "none"

    def class_of(self, position: int) -> str | None:
        if self.classes is None or self.classes[position] < 0:
            return None
        return self.class_names[self.classes[position]]

    def split_of(self, position: int) -> str | None:
        if self.splits is None or self.splits[position] < 0:
            return None
        return self.split_names[self.splits[position]]


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a column (missing values -1) and the names in code order."""
    codes, names = pd.factorize(values.map(lambda v: None if pd.isna(v) else str(v)), sort=True)
    return codes.astype(np.int32), [str(n) for n in names]


def _column(references: References, name: str, argument: str) -> pd.Series:
    if name not in references.table.columns:
        known = ", ".join(map(str, references.table.columns))
        raise InvalidArgument(f"{argument}: the references have no column {name!r} (they have: {known})")
    return references.table[name]


def _root(references: References, paths: list[str]) -> str:
    """The folder the photos' relative paths start from: the indexed folder, else the deepest one holding them all."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(sorted(set(folders))) if folders else ""
    for root in sorted(references.roots, key=len, reverse=True):
        if os.path.commonpath([root, common]) == root:
            return root
    return common


def _from_folders(references: References) -> tuple[pd.Series, pd.Series]:
    """(class, split) of each reference read from its folders; None where a photo has none."""
    paths = references.file_paths()
    known = [p for p in paths if p is not None]
    if not known:
        return pd.Series([None] * len(paths), dtype=object), pd.Series([None] * len(paths), dtype=object)
    root = _root(references, known)
    classes, splits = [], []
    for path in paths:
        if path is None:
            classes.append(None)
            splits.append(None)
            continue
        parts = PurePath(os.path.relpath(os.path.abspath(path), root)).parts[:-1]  # the folders below the root
        if parts and parts[0].lower() in SPLIT_NAMES:
            splits.append(parts[0])
            classes.append(parts[1] if len(parts) > 1 else None)
        else:
            splits.append(None)
            classes.append(parts[-1] if parts else None)
    return pd.Series(classes, dtype=object), pd.Series(splits, dtype=object)


def groups_of(references: References, class_column: str | None = None, split_column: str | None = None) -> Groups:
    """The classes and splits of the references: from the named columns, or read from their folders.

    Raises
    ------
    lookalike.errors.InvalidArgument
        A named column the references do not have.
    """
    by_folder_class, by_folder_split = (None, None)
    if class_column is None or split_column is None:
        by_folder_class, by_folder_split = _from_folders(references)
    class_values = _column(references, class_column, "class_column") if class_column else by_folder_class
    split_values = _column(references, split_column, "split_column") if split_column else by_folder_split
    classes, class_names = _codes(class_values.reset_index(drop=True))
    splits, split_names = _codes(split_values.reset_index(drop=True))
    # One class (or one split) for every photo says nothing: no label errors (or leaks) can be found.
    has_classes = len(class_names) > 1
    has_splits = len(split_names) > 1
    source = "columns" if class_column or split_column else "folders" if has_classes or has_splits else "none"
    return Groups(
        classes if has_classes else None,
        class_names if has_classes else [],
        splits if has_splits else None,
        split_names if has_splits else [],
        source,
    )
