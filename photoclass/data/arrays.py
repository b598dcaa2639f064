"""Image arrays as data: keras.datasets-style `.npz`/`.npy`, the CIFAR python folders and
MNIST's IDX files.

`read_arrays(path)` returns an `ArraySet`; `prepare` then caches, groups and splits its
images exactly like photos, and names each in the manifest `FILE#INDEX`
(`mnist.npz#x_train/0`, `data_batch_1#17`).

The CIFAR batches are pickles written by Python 2. They are read by `SafeUnpickler`, which
admits only what the format uses (builtin containers, bytes and NumPy's array
reconstruction) and refuses any other global before it is looked up: a file that would run
code stops with a one-line error and nothing in it runs. NumPy files are read with
`allow_pickle=False`.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import PhotoclassError
from .decode import IMAGE_SUFFIXES, DecodedPhoto, decode_photo
from .labelsets import joined_set

ARRAY_LAYOUTS = ("npz", "npy", "cifar", "idx")
NPZ_KEY_STYLES = (("x_train", "y_train", "x_test", "y_test"), ("x", "y"), ("images", "labels"))
CLASS_NAME_KEYS = ("class_names", "classes", "label_names")
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
IDX_PARTS = {"train": ("train-images", "train-labels"), "test": ("t10k-images", "t10k-labels")}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ArraySet:
    """Images with their labels; `names[i]` is image i's manifest path, `given_split[i]` its
    split when the source comes split ("train"/"test"), else None."""

    root: Path
    layout: str
    images: np.ndarray  # (N, H, W, C) uint8, C 1 or 3
    labels: list[str]
    names: list[str]
    given_split: list[str | None]
    notes: list[str] = field(default_factory=list)
    multi_hot: bool = False  # `y` was an (N, L) 0/1 matrix of label sets: `labels` are joined sets

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    def index(self, name: str) -> int:
        if not hasattr(self, "_index"):
            self._index = {n: i for i, n in enumerate(self.names)}
        return self._index[name]


def array_layout(path: str | os.PathLike, *, beside_photos: bool = False) -> str | None:
    """Which array layout `path` is ("npz", "npy", "cifar", "idx"), or None. A folder that also
    holds photos or subfolders is a photo set, unless `beside_photos` (the layout was asked for)."""
    path = Path(path)
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return "npz"
        if name.endswith(".npy"):
            return "npy"
        if _is_idx_name(name):
            return "idx"
        return None
    if not path.is_dir():
        return None
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    names = {p.name for p in entries}
    if (path / "data_batch_1").is_file() or all((path / n).is_file() for n in ("train", "test", "meta")):
        return "cifar"  # files, not the train/ and test/ folders of a photo set
    if not beside_photos and any(p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return None  # photos or class folders: a photo set, whatever arrays lie beside them (--layout npy reads those)
    if any(_is_idx_name(n.lower()) for n in names):
        return "idx"
    if _npy_pairs(path):
        return "npy"
    return None


def read_arrays(path: str | os.PathLike, layout: str = "auto") -> ArraySet:
    """The images and labels in an array file or folder; a one-line error for anything odd."""
    path = Path(path).expanduser().resolve()
    found = array_layout(path, beside_photos=layout != "auto")
    layout = found if layout == "auto" else layout
    if found is None or found != layout:
        what = f"as layout {layout!r} " if layout in ARRAY_LAYOUTS else ""
        raise PhotoclassError(
            f"{path} holds no image arrays photoclass reads {what}(.npz, .npy, the CIFAR python "
            "folder, MNIST IDX files). HINT: check the path, or drop --layout."
        )
    reader = {"npz": _read_npz, "npy": _read_npy, "cifar": _read_cifar, "idx": _read_idx}[layout]
    try:
        images, labels, names, splits, notes, multi_hot = reader(path)
    except PhotoclassError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
        MemoryError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        zlib.error,
    ) as e:
        raise PhotoclassError(
            f"Cannot read the {layout} data in {path}: {str(e)[:200]}. HINT: check that the file is complete."
        ) from None
    return ArraySet(path, layout, images, labels, names, splits, notes, multi_hot)


@functools.lru_cache(maxsize=4)
def _cached_arrays(path: str, layout: str, stamp: tuple[int, int]) -> ArraySet:
    return read_arrays(path, layout)


def array_item(root: str | os.PathLike, name: str) -> np.ndarray | None:
    """Image `name` (a manifest path like `mnist.npz#x_train/3`) of the array data at `root`
    as (H, W, 3) uint8, or None when `root` holds no arrays or no such image."""
    root = Path(root)
    layout = array_layout(root, beside_photos=True) if "#" in name else None
    if layout is None:
        return None
    st = root.stat()
    try:
        arrays = _cached_arrays(str(root), layout, (st.st_mtime_ns, st.st_size))
        image = arrays.images[arrays.index(name)]
    except (PhotoclassError, KeyError):
        return None
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def load_photo(root: str | os.PathLike, relpath: str, *, size: int | None = None) -> DecodedPhoto:
    """A manifest row's image, from a photo file or from array data; raises DecodeError."""
    pixels = array_item(root, relpath)
    if pixels is None:
        return decode_photo(Path(root) / relpath, size=size)
    image = Image.fromarray(pixels)
    height, width = pixels.shape[:2]
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return DecodedPhoto(image, width, height, "array", "")


# ---- .npz and .npy ---------------------------------------------------------------------------


def _read_npz(path: Path):
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        names = _class_names(data, keys)
        for style in NPZ_KEY_STYLES:
            if set(style) <= keys:
                break
        else:
            raise PhotoclassError(
                f"{path} has arrays {sorted(keys)}; photoclass needs x_train, y_train, x_test, "
                "y_test (keras.datasets style), or x and y, or images and labels. HINT: save "
                "them with np.savez(file, x_train=..., y_train=..., x_test=..., y_test=...)."
            )
        pairs = (
            [(style[0], style[1], "train"), (style[2], style[3], "test")]
            if len(style) == 4
            else [(style[0], style[1], None)]
        )
        parts = [(x, _npz_member(data, x), _npz_member(data, y), split) for x, y, split in pairs]
    return _combine(path, parts, names)


def _npz_member(data, key: str) -> np.ndarray:
    """data[key], once its header's size is checked against the bytes stored: a forged
    header must not make NumPy allocate terabytes before reading."""
    info = data.zip.getinfo(key if key in data.zip.namelist() else f"{key}.npy")
    with data.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared > info.file_size - f.tell():
            raise ValueError(f"{key} declares {declared:,} bytes of shape {shape} but stores {info.file_size:,}")
    return data[key]


def _load_npy(path: Path) -> np.ndarray:
    """A .npy file, memory-mapped first (a header that promises more than the file holds is an
    error, not an allocation), then copied."""
    try:
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from None


def _npy_pairs(folder: Path) -> list[tuple[Path, Path, str | None]]:
    for style in NPZ_KEY_STYLES:
        files = [folder / f"{k}.npy" for k in style]
        if all(f.is_file() for f in files):
            return (
                [(files[0], files[1], "train"), (files[2], files[3], "test")]
                if len(style) == 4
                else [(files[0], files[1], None)]
            )
    return []


def _read_npy(path: Path):
    if path.is_file():  # x.npy alone, with y.npy beside it (images: labels, x_test: y_test)
        partner = {"x": "y", "images": "labels", "x_train": "y_train", "x_test": "y_test"}.get(path.stem)
        if partner is None or not (path.parent / f"{partner}.npy").is_file():
            raise PhotoclassError(
                f"{path}: no labels beside it. HINT: save the labels as "
                f"{path.parent / ((partner or 'y') + '.npy')}, or pass the folder that holds both."
            )
        pairs = [(path, path.parent / f"{partner}.npy", None)]  # the file named, and no other
    else:
        pairs = _npy_pairs(path)
        if not pairs:
            raise PhotoclassError(
                f"{path} has no pair of .npy files. HINT: name them x.npy and y.npy (or "
                "images/labels, or x_train/y_train/x_test/y_test)."
            )
    folder = path if path.is_dir() else path.parent
    names_file = folder / "class_names.npy"
    names = list(map(_text, _load_npy(names_file))) if names_file.is_file() else None
    parts = [(x.name, _load_npy(x), _load_npy(y), split) for x, y, split in pairs]
    return _combine(path, parts, names, prefix="")


def _class_names(data, keys) -> list[str] | None:
    key = next((k for k in CLASS_NAME_KEYS if k in keys), None)
    return None if key is None else [_text(n) for n in _npz_member(data, key)]


# ---- CIFAR python folders --------------------------------------------------------------------

# numeric dtypes a CIFAR batch's arrays may have; nothing with fields, objects or pointers
_PICKLED_DTYPES = frozenset(
    f"{kind}{size}" for kind, sizes in (("u", "1248"), ("i", "1248"), ("f", "48"), ("b", "1")) for size in sizes
)
_MAX_PICKLED_BYTES = 1 << 31


class SafeUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR batches hold: builtin containers and numbers, bytes and
    NumPy arrays. Any other global (os.system, eval, a class) is refused before import.

    Even NumPy's own array reconstruction is not handed to the pickle: its dtype accepts
    any fields and flags in `__setstate__`, enough to read raw bytes as object pointers.
    Arrays and dtypes are built as inert records instead, checked (plain numeric dtypes,
    shape against the bytes), and only then made into arrays with `np.frombuffer`."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _PickledArray
        if module == "numpy" and name == "ndarray":
            return _NDARRAY
        if module == "numpy" and name == "dtype":
            return _PickledDtype
        if module == "_codecs" and name == "encode":  # how Python 3 writes bytes at protocol 2
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"it refers to {module}.{name}, which a CIFAR batch never holds "
            "(only arrays, lists, dicts, numbers and bytes are admitted)"
        )

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it refers to an object outside the file")


_NDARRAY = object()  # stands for numpy.ndarray as _reconstruct's first argument


class _PickledDtype:
    """numpy.dtype(code, align, copy) and its state, recorded and checked; nothing of NumPy runs."""

    def __init__(self, code=None, align=False, copy=False, *rest):
        code = _text(code)
        if code not in _PICKLED_DTYPES:
            raise pickle.UnpicklingError(f"it holds an array of dtype {code!r}; a CIFAR batch has plain numbers")
        self.code, self.order = code, "|"

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise pickle.UnpicklingError("it holds a dtype with fields or sub-arrays; a CIFAR batch has plain numbers")
        order = _text(state[1])
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"it holds a dtype of byte order {order!r}")
        self.order = order

    def dtype(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(self.order) if self.order in "<>" else np.dtype(self.code)


class _PickledArray:
    """numpy's _reconstruct(ndarray, ...) and the state that follows, as a checked record."""

    def __init__(self, cls=None, shape=None, code=None):
        if cls is not _NDARRAY:
            raise pickle.UnpicklingError("it rebuilds something other than a plain array")
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("it holds an array in an unknown form")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _PickledDtype) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("it holds an array of objects; a CIFAR batch has plain numbers")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n < _MAX_PICKLED_BYTES for n in shape)):
            raise pickle.UnpicklingError(f"it holds an array of shape {shape!r}")
        dtype = dtype.dtype()
        count = int(np.prod(shape, dtype=object))
        if count * dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(f"it holds {len(raw)} bytes for an array of shape {shape} and dtype {dtype}")
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _plain(value):
    """The unpickled value with every checked record made an array; refuses anything else."""
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise pickle.UnpicklingError("it holds an array without its data")
        return value.array
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise pickle.UnpicklingError(
        f"it holds a {type(value).__name__}; a CIFAR batch holds arrays, lists, dicts, numbers and bytes"
    )


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"it encodes text as {encoding!r}; a CIFAR batch uses latin1 only")
    return text.encode("latin1")


def load_safe_pickle(path: Path) -> object:
    """Unpickle `path` with `SafeUnpickler`; a refused global is a one-line PhotoclassError."""
    with open(path, "rb") as f:
        try:
            return _plain(SafeUnpickler(f, encoding="bytes").load())
        except RecursionError:
            raise PhotoclassError(
                f"Refused to read {path}: it nests too deeply for a CIFAR batch. HINT: use the "
                "CIFAR batches as published, or save your arrays with np.savez."
            ) from None
        except pickle.UnpicklingError as e:
            raise PhotoclassError(
                f"Refused to read {path}: {e}. Nothing in it was run. HINT: use the CIFAR "
                "batches as published, or save your arrays with np.savez."
            ) from None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _get(batch: dict, key: str):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(f"no {key!r} entry")


def _read_cifar(folder: Path):
    if (folder / "data_batch_1").is_file():  # CIFAR-10
        meta, label_key, names_key = folder / "batches.meta", "labels", "label_names"
        files = [(f, "test" if f == "test_batch" else "train") for f in CIFAR10_FILES if (folder / f).is_file()]
    else:  # CIFAR-100: train, test, meta; the 100 fine labels
        meta, label_key, names_key = folder / "meta", "fine_labels", "fine_label_names"
        files = [("train", "train"), ("test", "test")]
    info = load_safe_pickle(meta) if meta.is_file() else {}
    names = [_text(n) for n in _get(info, names_key)] if info else None
    parts = []
    for name, split in files:
        batch = load_safe_pickle(folder / name)
        if not isinstance(batch, dict):
            raise PhotoclassError(
                f"{folder / name} is not a CIFAR batch (a dict of data and labels). HINT: pass the folder as published."
            )
        data = np.asarray(_get(batch, "data"))
        if data.ndim != 2 or data.shape[1] != 3072:
            raise PhotoclassError(
                f"{folder / name}: data has shape {data.shape}; a CIFAR batch has (N, 3072). HINT: pass the folder as published."
            )
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        parts.append((name, images, np.asarray(_get(batch, label_key)), split))
    return _combine(folder, parts, names, prefix="")


# ---- MNIST IDX files -------------------------------------------------------------------------


def _is_idx_name(name: str) -> bool:
    return bool(re.search(r"idx[13]-ubyte(\.gz)?$", name))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array: magic 0 0 TYPE DIMS, big-endian sizes, data."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_TYPES:
        raise PhotoclassError(f"{path} is not an IDX file (bad magic number). HINT: check the download.")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = raw[4 + 4 * dims :]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise PhotoclassError(
            f"{path} is truncated or padded: {len(body)} bytes for shape {shape}. HINT: download it again."
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _read_idx(path: Path):
    folder = path if path.is_dir() else path.parent
    files = {f.name.lower(): f for f in folder.iterdir() if _is_idx_name(f.name.lower())}

    def find(prefix: str) -> Path | None:
        return next((f for n, f in sorted(files.items()) if n.startswith(prefix)), None)

    parts = []
    for split, (images_prefix, labels_prefix) in IDX_PARTS.items():
        if path.is_file() and not path.name.lower().startswith((images_prefix, labels_prefix)):
            continue  # one file named: its part alone
        images, labels = find(images_prefix), find(labels_prefix)
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            missing = f"{images_prefix if images is None else labels_prefix}-idx*-ubyte"
            raise PhotoclassError(
                f"{folder}: {missing} is missing beside {(images or labels).name}. "
                "HINT: put the image and label files of each split in one folder."
            )
        parts.append((images.name, read_idx(images), read_idx(labels), None if path.is_file() else split))
    if not parts:
        raise PhotoclassError(f"{folder} has no train-images/t10k-images IDX files. HINT: keep MNIST's file names.")
    return _combine(folder, parts, None, prefix="")


# ---- common ----------------------------------------------------------------------------------


def as_uint8_images(x: np.ndarray, source: str) -> np.ndarray:
    """(N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W) in uint8, [0, 1] floats or 0..255 numbers
    -> (N, H, W, C) uint8."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # channels first, as PyTorch keeps them
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise PhotoclassError(
            f"{source}: images must be (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W); "
            f"received shape {x.shape}. HINT: reshape them to (N, H, W, C)."
        )
    if min(x.shape[1:3]) < 8:
        raise PhotoclassError(
            f"{source}: images of {x.shape[1]}x{x.shape[2]} px are too small. HINT: images need 8 px a side at least."
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise PhotoclassError(
            f"{source}: images of dtype {x.dtype} are not pixels. HINT: save uint8 (0..255) or floats (0..1)."
        )
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not np.isfinite([lo, hi]).all() or lo < 0 or hi > 255:
        raise PhotoclassError(
            f"{source}: pixel values run from {lo} to {hi}; expected 0..1 or 0..255. HINT: rescale the images to 0..255 (uint8) before saving."
        )
    scale = 255.0 if np.issubdtype(x.dtype, np.floating) and hi <= 1.0 else 1.0
    return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)


def is_multi_hot(y: np.ndarray) -> bool:
    """An (N, L) 0/1 matrix whose rows are not all one-hot: a set of labels an image."""
    y = np.asarray(y)
    return y.ndim == 2 and y.shape[1] > 1 and _zeros_and_ones(y) and not (y.sum(1) == 1).all()


def _zeros_and_ones(y: np.ndarray) -> bool:
    return set(np.unique(y).tolist()) <= {0, 1}


def as_label_sets(y: np.ndarray, names: list[str] | None, source: str) -> list[str]:
    """A multi-hot (N, L) matrix -> each image's label names, joined as the manifest keeps them."""
    names = names if names is not None else [str(i) for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise PhotoclassError(
            f"{source}: {len(names)} label names for the {y.shape[1]} columns of y. HINT: list a name for every column."
        )
    return [joined_set((names[i] for i in np.flatnonzero(row)), f"{source} (its names)") for row in y]


def as_label_names(y: np.ndarray, names: list[str] | None, source: str) -> list[str]:
    """Integer, one-hot or text labels -> one class name per image."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind in "biuf" and not _zeros_and_ones(y):
        _refuse_label_matrix(y, source)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # keras.datasets.cifar10 gives (N, 1)
    elif y.ndim == 2 and _zeros_and_ones(y):
        y = y.argmax(1)  # one-hot
    if y.ndim != 1:
        raise PhotoclassError(
            f"{source}: labels must be (N,), (N, 1) or one-hot (N, K); received shape {y.shape}. HINT: one class number or name per image."
        )
    if y.dtype.kind in "US":
        return [_text(v) for v in y]
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise PhotoclassError(
            f"{source}: labels of dtype {y.dtype} are not class numbers or names. HINT: save integers or strings."
        )
    y = y.astype(np.int64)
    if names is not None:
        if y.min() < 0 or y.max() >= len(names):
            raise PhotoclassError(
                f"{source}: label {int(y.max())} has no class name ({len(names)} names). HINT: list a name for every class."
            )
        return [names[i] for i in y]
    return [str(i) for i in y]


def _refuse_label_matrix(y: np.ndarray, source: str) -> None:
    """A (N, L) `y` holding values other than 0 and 1 (scores, counts, -1 for absent)."""
    row, column = np.argwhere(~np.isin(y, (0, 1)))[0]
    raise PhotoclassError(
        f"{source}: its labels form a {y.shape} matrix but hold {y[row, column].item()!r} at row {row}, column "
        f"{column}; a one-hot or multi-hot matrix holds only 0 and 1. HINT: save the labels as 0/1 (for -1/1 or "
        "counts: (y > 0).astype('uint8')), or one class number per image."
    )


def _combine(path: Path, parts, names: list[str] | None, prefix: str | None = None):
    """[(member, x, y, split)] -> (images, labels, names, splits, notes, multi-hot). Where any
    part's y is multi-hot, every part's labels are label sets (a class name is a one-label set)."""
    images, labels, rows, splits = [], [], [], []
    multi_hot = any(is_multi_hot(y) for _, _, y, _ in parts)
    base = path.name if prefix is None else prefix
    for member, x, y, split in parts:
        source = f"{path.name}:{member}" if prefix is None else member
        x = as_uint8_images(x, source)
        y = as_label_sets(np.asarray(y), names, source) if is_multi_hot(y) else as_label_names(y, names, source)
        if len(x) != len(y):
            raise PhotoclassError(f"{source}: {len(x)} images but {len(y)} labels. HINT: save one label per image.")
        if images and x.shape[1:] != images[0].shape[1:]:
            raise PhotoclassError(
                f"{source}: images of shape {x.shape[1:]} beside {images[0].shape[1:]}. HINT: give every part the same image size."
            )
        stem = f"{base}#{member}/" if prefix is None else f"{member}#"
        images.append(x)
        labels += y
        rows += [f"{stem}{i}" for i in range(len(x))]
        splits += [split] * len(x)
    return np.concatenate(images), labels, rows, splits, [], multi_hot
