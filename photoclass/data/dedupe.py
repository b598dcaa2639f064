"""Groups of byte-identical and near-identical photos.

A photo's fingerprint is a 64-bit perceptual hash (DCT of a 32x32 grey thumbnail) plus a
16x16 colour thumbnail. Two photos are near-identical when their hashes differ in few
bits *and* their colour thumbnails agree; the second test keeps smooth skies, whose
hashes look alike, from being chained together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

THUMB_SIZE = 16
# Chosen by eye on the weather photos: every pair within both limits there is the same
# photo cropped, re-encoded or colour-edited (see benchmarks/README.md).
MAX_HASH_DISTANCE = 16  # of 64 bits
MAX_THUMB_DIFFERENCE = 16.0  # mean absolute difference of the colour thumbnails, 0..255
# Tiny images (28-px digits, 32-px CIFAR) share their plain backgrounds: with the photo limits,
# 1,365 of scikit-learn's 1,797 digits chained into groups (one of 203). These limits leave one
# pair there; array data uses them.
ARRAY_MAX_HASH_DISTANCE = 8
ARRAY_MAX_THUMB_DIFFERENCE = 6.0
EXACT_LIMIT = 20_000  # photos; the exact search takes about 1 s there, and grows with the square
# Near-identity is not transitive: a chain of look-alikes (smooth skies, plain studio
# backgrounds) can link thousands of different photos. Close pairs join first, and a link that
# would grow a group past this is refused. Weather's largest group is 4, clothing's 26.
MAX_GROUP = 50


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def fingerprint(image: Image.Image) -> tuple[int, bytes]:
    """Return (64-bit perceptual hash, 16x16x3 uint8 thumbnail bytes) of an RGB image."""
    grey = np.asarray(image.convert("L").resize((32, 32), Image.BOX), dtype=np.float64)
    low = (_DCT32 @ grey @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term says only how bright the photo is
    phash = int(np.packbits(bits).view(">u8")[0])
    thumb = image.resize((THUMB_SIZE, THUMB_SIZE), Image.BOX).tobytes()
    return phash, thumb


def near_identical(
    a, b, *, max_hash_distance: int = MAX_HASH_DISTANCE, max_thumb_difference: float = MAX_THUMB_DIFFERENCE
) -> bool:
    """Whether two fingerprinted photos (anything with `phash` and `thumb`) pass both limits of
    `find_duplicates`: the same photo cropped, re-encoded or colour-edited."""
    if (a.phash ^ b.phash).bit_count() > max_hash_distance:
        return False
    thumbs = np.frombuffer(a.thumb, np.uint8).astype(np.int16) - np.frombuffer(b.thumb, np.uint8)
    return float(np.abs(thumbs).mean()) <= max_thumb_difference


@dataclass
class DuplicateGroups:
    """`group[i]` is the group id of photo i; ids count from 0 in order of first member."""

    group: np.ndarray  # (N,) int
    identical_groups: int  # groups of 2+ byte-identical files
    near_groups: int  # groups of 2+ whose members are not all byte-identical
    photos_in_groups: int
    largest: int
    members: list[list[int]] = field(default_factory=list)  # only groups of 2+
    search: str = "exact"  # or "bands"
    links_refused: int = 0  # near-identical pairs left apart: joining them would pass `max_group`

    @property
    def count(self) -> int:
        return len(self.members)


def find_duplicates(
    content_keys: list[str],
    phashes: np.ndarray,
    thumbs: np.ndarray,
    *,
    max_hash_distance: int = MAX_HASH_DISTANCE,
    max_thumb_difference: float = MAX_THUMB_DIFFERENCE,
    method: str = "auto",
    bands: int = 64,
    max_group: int = MAX_GROUP,
) -> DuplicateGroups:
    """Group photos: same content key, or perceptual hash and thumbnail both close.

    `phashes` is (N,) uint64, `thumbs` is (N, 16*16*3) uint8. `method="exact"` compares every
    photo with all of similar brightness: every pair is found, and time grows with the square
    of the photos. `"bands"` compares only photos that share one of `bands` locality-sensitive
    keys of their thumbnails: near-linear, and it may miss a pair that is near the limits.
    `"auto"` is exact up to `EXACT_LIMIT` photos.

    Byte-identical files always share a group. Near-identical pairs join closest first (by
    thumbnail difference), unless the joined group would hold more than `max_group` photos.
    """
    n = len(content_keys)
    sets = _DisjointSets(n)
    first_with_key: dict[str, int] = {}
    for i, key in enumerate(content_keys):
        sets.union(first_with_key.setdefault(key, i), i)

    phashes = np.asarray(phashes, dtype=np.uint64)
    thumbs = np.asarray(thumbs, dtype=np.uint8).reshape(n, -1)
    if method == "auto":
        method = "exact" if n <= EXACT_LIMIT else "bands"
    candidates = (
        _window_pairs(thumbs, phashes, max_hash_distance, max_thumb_difference)
        if method == "exact"
        else _banded_pairs(thumbs, bands=bands)
    )
    refused = 0
    for a, b in _close_pairs(candidates, phashes, thumbs, max_hash_distance, max_thumb_difference):
        refused += not sets.union(a, b, max_group)

    roots = np.array([sets.find(i) for i in range(n)], dtype=np.int64)
    return _duplicate_groups(content_keys, roots, method, refused)


class _DisjointSets:
    """Union-find over photo indices 0..n-1; each set's root is its first member."""

    def __init__(self, n: int):
        self.parent = np.arange(n)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int, limit: int | None = None) -> bool:
        """Join the sets of `i` and `j`, unless the joined set would hold over `limit`: then False."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return True
        if limit is not None and self.size[ri] + self.size[rj] > limit:
            return False
        self.parent[max(ri, rj)] = min(ri, rj)
        self.size[min(ri, rj)] += self.size[max(ri, rj)]
        return True


def _duplicate_groups(content_keys: list[str], roots: np.ndarray, method: str, refused: int) -> DuplicateGroups:
    """The groups, numbered in order of their first members, and how many of each kind."""
    _, group = np.unique(roots, return_inverse=True)  # roots are first members: ids in order
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        members.setdefault(int(g), []).append(i)
    multi = [m for m in members.values() if len(m) > 1]
    identical = sum(1 for keys in _key_counts(content_keys, multi) for count in keys if count > 1)
    near = sum(1 for m in multi if len({content_keys[i] for i in m}) > 1)
    return DuplicateGroups(
        group=group.astype(np.int64),
        identical_groups=identical,
        near_groups=near,
        photos_in_groups=sum(len(m) for m in multi),
        largest=max((len(m) for m in multi), default=1),
        members=multi,
        search=method,
        links_refused=refused,
    )


def _close_pairs(
    candidates, phashes: np.ndarray, thumbs: np.ndarray, max_distance: int, max_difference: float
) -> list[tuple[int, int]]:
    """The candidate pairs within both limits, each once (i < j), closest thumbnails first."""
    found_i, found_j, found_diff = [], [], []
    for i, j in candidates:
        close = np.bitwise_count(phashes[i] ^ phashes[j]) <= max_distance
        i, j = i[close], j[close]
        diff = np.abs(thumbs[i].astype(np.int16) - thumbs[j]).mean(axis=1, dtype=np.float32)
        close = diff <= max_difference
        found_i.append(np.minimum(i, j)[close])
        found_j.append(np.maximum(i, j)[close])
        found_diff.append(diff[close])
    if not found_i:
        return []
    i, j, diff = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_diff)
    _, first = np.unique(i.astype(np.int64) * len(phashes) + j, return_index=True)  # bands repeat pairs
    i, j, diff = i[first], j[first], diff[first]
    order = np.lexsort((j, i, diff))
    return list(zip(i[order].tolist(), j[order].tolist()))


def _window_pairs(thumbs: np.ndarray, phashes: np.ndarray, max_distance: int, max_difference: float, block: int = 1024):
    """Yield (i, j) index arrays holding every pair within both limits, and others.

    mean|a - b| >= |mean(a) - mean(b)|: only photos of similar mean brightness can pass the
    thumbnail test, so each block is paired with a window of the brightness-sorted list.
    """
    brightness = thumbs.mean(axis=1, dtype=np.float32)
    order = np.argsort(brightness, kind="stable")
    brightness = brightness[order]
    for start in range(0, len(thumbs), block):
        stop = min(start + block, len(thumbs))
        lo = np.searchsorted(brightness, brightness[start] - max_difference, "left")
        hi = np.searchsorted(brightness, brightness[stop - 1] + max_difference, "right")
        distance = np.bitwise_count(phashes[order[start:stop], None] ^ phashes[None, order[lo:hi]])
        rows, cols = np.nonzero(distance <= max_distance)
        keep = cols + lo > rows + start  # each pair once
        yield order[rows[keep] + start], order[cols[keep] + lo]


def _banded_pairs(thumbs: np.ndarray, *, bands: int, seed: int = 0):
    """Yield (i, j) index arrays of photos that share a band: the signs of random
    projections of the mean-removed 8x8 colour thumbnail (SimHash), 16 signs a band.

    Near-identical thumbnails point the same way, so they agree in most signs; on the weather
    and clothing photos 64 bands of 16 find every pair the exact search finds.
    """
    n, bits = len(thumbs), 16
    rng = np.random.default_rng(seed)
    planes = rng.standard_normal((8 * 8 * 3, bands * bits)).astype(np.float32)
    weights = (1 << np.arange(bits)).astype(np.uint16)
    keys = np.empty((n, bands), np.uint16)
    for start in range(0, n, 8192):  # bounded memory: the projections of 8,192 photos at a time
        x = thumbs[start : start + 8192].reshape(-1, 8, 2, 8, 2, 3).mean(axis=(2, 4), dtype=np.float32)
        x = x.reshape(len(x), -1)
        x -= x.mean(axis=1, keepdims=True)
        signs = (x @ planes > 0).reshape(len(x), bands, bits)
        keys[start : start + len(x)] = (signs * weights).sum(axis=2, dtype=np.uint16)
    for band in range(bands):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        # pair each photo with the 1st, 2nd, ... next one while they share the key
        live = np.arange(n - 1)
        for step in range(1, n):
            live = live[sorted_keys[live] == sorted_keys[live + step]]
            if not len(live):
                break
            yield order[live], order[live + step]
            live = live[live + step + 1 < n]


def _key_counts(content_keys: list[str], groups: list[list[int]]):
    for members in groups:
        counts: dict[str, int] = {}
        for i in members:
            counts[content_keys[i]] = counts.get(content_keys[i], 0) + 1
        yield counts.values()
