"""Decode each photo once into pixels on disk at the model's size, reused while the file is unchanged.

Layout under the cache folder (default `$XDG_CACHE_HOME/photoclass`):

    index.sqlite               (content key, spec) -> pack, row, size, format, fingerprint
    packs/<spec>/<id>.u8       raw: (rows, S, S, 3) uint8 arrays, read memory-mapped
    packs/<spec>/<id>.jpgs     jpeg: each row a JPEG (quality 95, no chroma subsampling),
    packs/<spec>/<id>.jpgs.idx   at the byte offsets this file lists (int64, rows + 1)

The key is a hash of the file's bytes, so renaming or copying a folder still hits the
cache, and `--out` does not matter. For raw packs, workers write pixels straight into the
pack file with `os.pwrite`, so neither they nor the parent hold the decoded images in memory.

The jpeg form is 8x smaller (24 KB a photo at 260 px against 198 KB) and costs about 1 ms a
photo to decode, which the loader does a batch ahead of the model (benchmarks/loading.py);
its pixels differ from the raw ones by under one level in 255 on average.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import signal
import sqlite3
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ..core.errors import PhotoclassError
from ..core.atomic import check_writable
from .decode import DecodeError, decode_photo
from .dedupe import fingerprint

DECODER_VERSION = 1  # bump when decoding changes, so old cache entries are not reused
PIXEL_FORMATS = ("raw", "jpeg")
JPEG_QUALITY = 95
PACK_ROWS = 2048  # photos per pack file; a finished pack survives an interrupted run
_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    key TEXT NOT NULL, spec TEXT NOT NULL, pack TEXT, row INTEGER,
    status TEXT NOT NULL, reason TEXT NOT NULL, width INTEGER, height INTEGER,
    format TEXT, phash INTEGER, thumb BLOB,
    PRIMARY KEY (key, spec)
);
CREATE TABLE IF NOT EXISTS file_keys (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER,
    key TEXT NOT NULL
)"""


def default_cache_dir() -> Path:
    """$PHOTOCLASS_CACHE, else $XDG_CACHE_HOME/photoclass, else ~/.cache/photoclass."""
    if os.environ.get("PHOTOCLASS_CACHE"):
        return Path(os.environ["PHOTOCLASS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "photoclass"


def content_key(path: str | os.PathLike) -> str:
    """A hash of the file's bytes (BLAKE2b, 128 bits)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def content_keys(paths: Sequence[Path], workers: int = 2) -> list[str]:
    # hashlib releases the GIL on large buffers, so threads use both cores
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(content_key, paths, chunksize=64))


def _stat_signature(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    # ctime changes on every write and cannot be set back, unlike mtime (cp -p, touch -d)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True)
class CacheEntry:
    status: str  # "ok" or "skipped"
    reason: str
    pack: str | None = None
    row: int = -1
    width: int = 0
    height: int = 0
    format: str = ""
    phash: int = 0
    thumb: bytes = b""


class ImageCache:
    """The decode-once store for one image size."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        image_size: int,
        *,
        max_pixels: int,
        min_side: int,
        pixel_format: str = "raw",
    ):
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, not {pixel_format!r}")
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.pixel_format = pixel_format
        self.spec = f"s{image_size}-squash-p{max_pixels}-m{min_side}-v{DECODER_VERSION}"
        if pixel_format == "jpeg":
            self.spec += f"-jpeg{JPEG_QUALITY}"
        self.pack_dir = self.root / "packs" / self.spec
        try:
            self.pack_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise_cache_error(self.root, e)
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=60)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def content_keys(self, paths: Sequence[Path], workers: int) -> list[str]:
        """Content keys of `paths`, hashing only files whose size, times or inode changed."""
        paths = [Path(p).absolute() for p in paths]
        signatures = [_stat_signature(p) for p in paths]
        known = {}
        names = [str(p) for p in paths]
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            known.update(
                (path, (tuple(sig), key))
                for path, *sig, key in self._db.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, key FROM file_keys "
                    f"WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        stale = [i for i, (name, sig) in enumerate(zip(names, signatures)) if known.get(name, (None,))[0] != sig]
        fresh = dict(zip(stale, content_keys([paths[i] for i in stale], workers)))
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO file_keys VALUES (?,?,?,?,?,?)",
                [(names[i], *signatures[i], key) for i, key in fresh.items()],
            )
        return [fresh[i] if i in fresh else known[name][1] for i, name in enumerate(names)]

    def lookup(self, keys: Sequence[str], *, pixels: bool = True) -> dict[str, CacheEntry]:
        """The entries of `keys` that are known; with `pixels`, only those whose pixels are kept
        (a photo decoded for its fingerprint alone counts as missing)."""
        found: dict[str, CacheEntry] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                "SELECT key, status, reason, pack, row, width, height, format, phash, thumb "
                f"FROM photos WHERE spec = ? AND key IN ({','.join('?' * len(chunk))})",
                [self.spec, *chunk],
            )
            for key, *values in rows:
                values[7] %= 1 << 64  # stored signed
                entry = CacheEntry(*values)
                if entry.pack is not None and (self.pack_dir / entry.pack).exists():
                    found[key] = entry
                elif entry.pack is None and (entry.status != "ok" or not pixels):
                    found[key] = entry
        return found

    def decode_missing(
        self,
        keys: Sequence[str],
        paths: Sequence[Path],
        *,
        workers: int,
        progress: Callable[[int], None] | None = None,
        pixels: bool = True,
        pool=None,
    ) -> tuple[dict[str, CacheEntry], int]:
        """Decode the photos not cached yet. Returns (every key's entry, how many decoded).

        Without `pixels`, only what `prepare` needs (size, format, fingerprint) is kept: for
        cached-feature training, which decodes the photos again once, straight into the model.
        `pool` (with a process pool's `map`, e.g. a `RayPool`) decodes instead of this machine's cores.

        One process at a time decodes into a cache (a file lock); another one waits, then
        finds the photos the first decoded and does only the rest.
        """

        def missing(entries):
            todo: dict[str, Path] = {}
            for key, path in zip(keys, paths):
                if key not in entries:
                    todo.setdefault(key, path)
            return list(todo.items())

        entries = self.lookup(keys, pixels=pixels)
        if not missing(entries):
            if progress:
                progress(len(keys))
            return entries, 0
        with self._lock():
            entries = self.lookup(keys, pixels=pixels)  # what another process added while this one waited
            items = missing(entries)
            if progress:
                progress(len(keys) - len(items))
            self._remove_abandoned_packs()
            check_writable(
                self.pack_dir,
                need_bytes=len(items) * self._row_bytes() if pixels else 0,
                hint="pass another --cache-dir",
            )
            given = pool
            pool = given or (_pool(workers) if len(items) > 32 and workers > 1 else None)
            try:
                for start in range(0, len(items), PACK_ROWS):
                    chunk = items[start : start + PACK_ROWS]
                    entries.update(
                        self._fill_pack(chunk, pool, progress) if pixels else self._fingerprint(chunk, pool, progress)
                    )
            finally:
                if pool is not None and pool is not given:
                    pool.shutdown(cancel_futures=True)
        return entries, len(items)

    @contextlib.contextmanager
    def _lock(self):
        with open(self.root / "lock", "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(
                    f"waiting for another photoclass process using the cache {self.root} ...",
                    file=sys.stderr,
                    flush=True,
                )
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _row_bytes(self) -> int:  # an estimate for jpeg, to check the free space
        return self.image_size * self.image_size * (3 if self.pixel_format == "raw" else 1)

    def _remove_abandoned_packs(self) -> None:
        """Packs half-written by a killed process: never in the index, so never trusted."""
        for tmp in self.pack_dir.glob(".*.tmp"):  # only the lock holder writes packs
            tmp.unlink(missing_ok=True)

    def _fill_pack(self, items, pool, progress, work=None) -> dict[str, CacheEntry]:
        """Decode `items` [(key, path or array)] into a new pack, by `work` (default: decode a file)."""
        jpeg = self.pixel_format == "jpeg"
        name = f"{uuid.uuid4().hex}.{'jpgs' if jpeg else 'u8'}"
        tmp = self.pack_dir / f".{name}.tmp"
        with open(tmp, "wb") as f:
            if not jpeg:
                f.truncate(len(items) * self._row_bytes())  # sparse until written
        tasks = [
            (
                path if isinstance(path, np.ndarray) else str(path),
                self.pixel_format,
                str(tmp),
                row,
                self.image_size,
                self.max_pixels,
                self.min_side,
            )
            for row, (_, path) in enumerate(items)
        ]
        results = []
        offsets = [0]
        try:
            work = work or _decode_into_pack
            mapped = pool.map(work, tasks, chunksize=8) if pool else map(work, tasks)
            with open(tmp, "ab") as f:
                for result in mapped:
                    results.append(result[:7])
                    if jpeg:  # the parent appends, in row order
                        f.write(result[7])
                        offsets.append(offsets[-1] + len(result[7]))
                    if progress:
                        progress(1)
            # No fsync: a killed process cannot lose written pages, and the cache is
            # disposable after a power cut (an fsync would cost ~10% of a cold run).
            if jpeg:  # the offsets first: a pack that exists always has them
                index_tmp = self.pack_dir / f".{name}.idx.tmp"
                index_tmp.write_bytes(np.asarray(offsets, dtype="<i8").tobytes())
                os.replace(index_tmp, self.pack_dir / f"{name}.idx")
            os.replace(tmp, self.pack_dir / name)
        finally:
            tmp.unlink(missing_ok=True)
        entries = {}
        for (key, _), (status, reason, width, height, fmt, phash, thumb), row in zip(items, results, range(len(items))):
            pack = name if status == "ok" else None
            entries[key] = CacheEntry(status, reason, pack, row, width, height, fmt, phash, thumb)
        return self._record(entries)

    def _fingerprint(self, items, pool, progress) -> dict[str, CacheEntry]:
        """Like `_fill_pack`, keeping no pixels: the entries say pack None."""
        tasks = [(str(path), None, None, 0, self.image_size, self.max_pixels, self.min_side) for _, path in items]
        results = []
        for result in pool.map(_decode_into_pack, tasks, chunksize=8) if pool else map(_decode_into_pack, tasks):
            results.append(result)
            if progress:
                progress(1)
        return self._record(
            {key: CacheEntry(*result[:2], None, -1, *result[2:7]) for (key, _), result in zip(items, results)}
        )

    def _record(self, entries: dict[str, CacheEntry]) -> dict[str, CacheEntry]:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO photos VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        k,
                        self.spec,
                        e.pack,
                        e.row,
                        e.status,
                        e.reason,
                        e.width,
                        e.height,
                        e.format,
                        _to_signed(e.phash),
                        e.thumb,
                    )
                    for k, e in entries.items()
                ],
            )
        return entries

    def store_arrays(
        self, keys: Sequence[str], images: np.ndarray, *, progress: Callable[[int], None] | None = None
    ) -> tuple[dict[str, CacheEntry], int]:
        """Cache in-memory images (N, H, W, C uint8) like decoded photos. Returns (every
        key's entry, how many were new)."""
        entries = self.lookup(keys)
        todo = {k: i for i, k in enumerate(keys) if k not in entries}
        if progress:
            progress(len(keys) - len(todo))
        if not todo:
            return entries, 0
        with self._lock():
            self._remove_abandoned_packs()
            check_writable(self.pack_dir, need_bytes=len(todo) * self._row_bytes(), hint="pass another --cache-dir")
            items = list(todo.items())
            for start in range(0, len(items), PACK_ROWS):
                chunk = [(key, images[i]) for key, i in items[start : start + PACK_ROWS]]
                entries.update(self._fill_pack(chunk, None, progress, work=_array_into_pack))
        return entries, len(todo)

    def images(self, entries: Sequence[CacheEntry]) -> CachedImages:
        return CachedImages(self.pack_dir, self.image_size, [(e.pack, e.row) for e in entries])


class CachedImages:
    """A read-only (N, S, S, 3) uint8 array-like over pack files (raw ones memory-mapped,
    jpeg ones decoded on read, the rows of a batch in threads)."""

    def __init__(self, pack_dir: Path, image_size: int, locations: list[tuple[str, int]], threads: int = 0):
        self.pack_dir = Path(pack_dir)
        self.image_size = image_size
        self.locations = locations
        self.threads = threads or os.cpu_count() or 1
        self._maps: dict[str, np.ndarray] = {}
        self._offsets: dict[str, np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.locations)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.image_size, self.image_size, 3)

    @property
    def lossy(self) -> bool:
        """Whether any row is kept as a JPEG, not as the exact decoded pixels."""
        return any(pack.endswith(".jpgs") for pack, _ in self.locations)

    def _pack(self, name: str) -> np.ndarray:
        if name not in self._maps:
            s = self.image_size
            data = np.memmap(self.pack_dir / name, dtype=np.uint8, mode="r")
            if name.endswith(".jpgs"):
                self._offsets[name] = np.fromfile(self.pack_dir / f"{name}.idx", dtype="<i8")
                self._maps[name] = data
            else:
                self._maps[name] = data.reshape(-1, s, s, 3)
        return self._maps[name]

    def _row(self, location: tuple[str, int]) -> np.ndarray:
        pack, row = location
        data = self._pack(pack)
        if not pack.endswith(".jpgs"):
            return data[row]
        start, stop = self._offsets[pack][row : row + 2]
        with Image.open(io.BytesIO(data[start:stop])) as image:
            return np.asarray(image)  # stored RGB

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return np.array(self._row(self.locations[index]))  # a writable copy, not a view of the map
        indices = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        locations = [self.locations[j] for j in indices.tolist()]
        if any(pack.endswith(".jpgs") for pack, _ in locations[:1]) and len(locations) > 1:
            if self._pool is None:  # Pillow decodes without the GIL
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
            rows = self._pool.map(self._row, locations)
        else:
            rows = map(self._row, locations)
        for i, pixels in enumerate(rows):
            out[i] = pixels
        return out

    def __getstate__(self):  # memory maps are reopened in each worker, not pickled; nor is a thread pool
        return {**self.__dict__, "_maps": {}, "_offsets": {}, "_pool": None}


def _decode_into_pack(task):
    """Worker: decode one photo and keep its pixels (`keep`: "raw" at `row` of the pack file,
    "jpeg" returned encoded, None not at all). Returns (status, reason, width, height, format,
    phash, thumb, JPEG bytes or b"")."""
    path, keep, pack_path, row, size, max_pixels, min_side = task
    try:
        photo = decode_photo(path, size=size, max_pixels=max_pixels, min_side=min_side)
    except DecodeError as e:
        return ("skipped", e.reason, 0, 0, "", 0, b"", b"")
    except OSError as e:
        return ("skipped", f"cannot read the file ({e.strerror or e})", 0, 0, "", 0, b"", b"")
    except Exception as e:  # a decoder bug must cost one photo, not the run
        return ("skipped", f"decoder failure: {type(e).__name__}: {e}"[:200], 0, 0, "", 0, b"", b"")
    blob = _keep(photo.to_array(), keep, pack_path, row) if keep else b""
    phash, thumb = fingerprint(photo.image)
    return ("ok", photo.note, photo.width, photo.height, photo.format, phash, thumb, blob)


def _array_into_pack(task):
    """Like `_decode_into_pack`, for an image that is already an (H, W, C) uint8 array."""
    pixels, keep, pack_path, row, size = task[:5]
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    height, width = pixels.shape[:2]
    resized = image if image.size == (size, size) else image.resize((size, size), Image.BILINEAR)
    blob = _keep(np.asarray(resized, dtype=np.uint8), keep, pack_path, row)
    phash, thumb = fingerprint(image)
    return ("ok", "", width, height, "array", phash, thumb, blob)


def _keep(pixels: np.ndarray, keep: str, pack_path: str, row: int) -> bytes:
    """Write raw pixels at `row` of the pack (returns b""), or return them as a JPEG."""
    if keep == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        return buffer.getvalue()
    fd = os.open(pack_path, os.O_WRONLY)
    try:
        os.pwrite(fd, pixels.tobytes(), row * pixels.nbytes)
    finally:
        os.close(fd)
    return b""


def array_keys(images: np.ndarray) -> list[str]:
    """Content keys of in-memory images: a hash of each one's shape and pixels."""
    return [hashlib.blake2b(repr(im.shape).encode() + im.tobytes(), digest_size=16).hexdigest() for im in images]


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork, as torch's DataLoader does: spawn would re-run a user's script without a
    # __main__ guard, and the workers never touch torch, so its threads do not matter
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(workers, mp_context=get_context(method), initializer=_ignore_sigint)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _to_signed(value: int) -> int:  # SQLite integers are signed 64-bit
    return value - (1 << 64) if value >= 1 << 63 else value


def raise_cache_error(root: Path, error: OSError):
    raise PhotoclassError(
        f"Cannot use the cache folder {root} ({error.strerror}). HINT: pass a writable folder with --cache-dir."
    ) from None
