import io

import numpy as np
from PIL import Image, ImageEnhance

from photoclass.data.dedupe import find_duplicates, fingerprint
from photoclass.data.split import grouped_split, leaked_test_photos, naive_split

from conftest import synthetic_photo


def fingerprints(images):
    prints = [fingerprint(im.resize((64, 64))) for im in images]
    phashes = np.array([p for p, _ in prints], dtype=np.uint64)
    thumbs = np.stack([np.frombuffer(t, np.uint8) for _, t in prints])
    return phashes, thumbs


def reencoded(image, quality=60, scale=0.7):
    buf = io.BytesIO()
    small = image.resize((int(image.width * scale), int(image.height * scale)))
    ImageEnhance.Brightness(small).enhance(1.05).save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


def test_identical_and_near_identical_photos_are_grouped_distinct_ones_are_not():
    photos = [synthetic_photo(i, size=(160, 120), cls=i % 3) for i in range(12)]
    images = photos + [photos[0], reencoded(photos[1])]  # 12: same key as 0; 13: edited copy of 1
    keys = [f"k{i}" for i in range(12)] + ["k0", "k13"]
    groups = find_duplicates(keys, *fingerprints(images))
    assert groups.group[12] == groups.group[0]
    assert groups.group[13] == groups.group[1]
    assert len(set(groups.group[:12].tolist())) == 12
    assert groups.identical_groups == 1 and groups.near_groups == 1
    assert groups.count == 2 and groups.largest == 2


def test_grouped_split_is_stratified_and_keeps_groups_whole():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [200, 100, 60])
    groups = np.arange(len(labels))
    for start in range(0, 300, 7):  # pairs and triples of duplicates within each class
        groups[start : start + rng.integers(1, 4)] = start
    splits = grouped_split(labels, groups, val_size=0.15, test_size=0.15, seed=3)
    for g in np.unique(groups):
        assert len(set(splits[groups == g])) == 1
    for c, n in zip((0, 1, 2), (200, 100, 60)):
        counts = {s: int(np.sum(splits[labels == c] == s)) for s in ("train", "val", "test")}
        assert abs(counts["test"] - 0.15 * n) <= 3 and abs(counts["val"] - 0.15 * n) <= 3
    assert leaked_test_photos(splits, groups) == 0


def test_split_is_seeded():
    labels = np.repeat([0, 1], 50)
    groups = np.arange(100)
    a = grouped_split(labels, groups, val_size=0.2, test_size=0.2, seed=1)
    b = grouped_split(labels, groups, val_size=0.2, test_size=0.2, seed=1)
    c = grouped_split(labels, groups, val_size=0.2, test_size=0.2, seed=2)
    assert (a == b).all() and not (a == c).all()


def test_naive_split_leaks_twins_that_the_grouped_split_keeps_together():
    labels = np.repeat([0, 1], 100)
    groups = np.arange(200) // 2  # every photo has a twin
    naive = naive_split(labels, val_size=0.15, test_size=0.15, seed=0)
    grouped = grouped_split(labels, groups, val_size=0.15, test_size=0.15, seed=0)
    assert leaked_test_photos(naive, groups) > 10
    assert leaked_test_photos(grouped, groups) == 0


def test_tiny_classes_still_split_without_error():
    labels = np.array([0, 0, 1, 1, 1, 2])
    splits = grouped_split(labels, np.arange(6), val_size=0.15, test_size=0.15, seed=0)
    assert set(splits.tolist()) <= {"train", "val", "test"} and len(splits) == 6


def test_grouped_folds_cover_every_photo_once_keep_groups_whole_and_stratify():
    from photoclass.data.split import grouped_folds

    rng = np.random.default_rng(0)
    labels = np.repeat(rng.integers(0, 3, 150), 2)
    groups = np.arange(300) // 2  # pairs of twins, each pair one class
    folds = grouped_folds(labels, groups, folds=5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    assert all(len(set(folds[groups == g].tolist())) == 1 for g in np.unique(groups))  # a pair never straddles
    for cls in range(3):
        counts = np.bincount(folds[labels == cls], minlength=5)
        assert counts.max() - counts.min() <= 2  # about equal per class


def test_banded_search_finds_edited_copies_among_many_photos():
    rng = np.random.default_rng(1)
    n = 3000
    thumbs = rng.integers(0, 256, (n, 4, 4, 3)).repeat(4, axis=1).repeat(4, axis=2).reshape(n, -1).astype(np.uint8)
    phashes = rng.integers(0, 2**64, n, dtype=np.uint64)
    originals, copies = np.arange(0, n, 30), np.arange(0, n, 30) + 1
    thumbs[copies] = np.clip(thumbs[originals].astype(int) + rng.integers(-6, 7, (len(copies), 48 * 16)), 0, 255)
    phashes[copies] = phashes[originals] ^ np.uint64(0b1011)
    keys = [str(i) for i in range(n)]
    exact = find_duplicates(keys, phashes, thumbs, method="exact")
    banded = find_duplicates(keys, phashes, thumbs, method="bands")
    assert (exact.group[originals] == exact.group[copies]).all()
    assert banded.group.tolist() == exact.group.tolist()
    assert banded.count == len(copies)


def test_a_chain_of_look_alikes_stops_at_the_group_limit_closest_pairs_first():
    # photo i differs from i+1 by 10 levels everywhere: each neighbour is near-identical, the chain's ends are not
    n = 12
    steps = [0, 10, 10, 10, 10, 10, 10, 3, 10, 10, 10, 10]  # 6 and 7 are the closest pair
    thumbs = np.repeat(np.cumsum(steps)[:, None], 768, axis=1).astype(np.uint8)
    phashes = np.zeros(n, dtype=np.uint64)
    keys = [str(i) for i in range(n)]
    whole = find_duplicates(keys, phashes, thumbs, max_group=n)
    assert whole.largest == n and whole.links_refused == 0
    capped = find_duplicates(keys, phashes, thumbs, max_group=4)
    assert capped.largest <= 4 and capped.links_refused > 0
    assert capped.group[6] == capped.group[7]  # joined first
    assert all(
        capped.group[i] == capped.group[i + 1] or capped.group[i + 1] == capped.group[i + 2] for i in range(n - 2)
    )  # refused only where a group was full: no photo is left out between
    # byte-identical files join whatever the limit
    same = find_duplicates(["a"] * 6, np.zeros(6, dtype=np.uint64), np.zeros((6, 768), np.uint8), max_group=2)
    assert same.largest == 6 and same.identical_groups == 1
