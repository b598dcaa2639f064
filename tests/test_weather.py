"""The real weather photos (../shared/data/weather): slow, skipped where absent."""

import csv
from collections import defaultdict

import pytest

import photoclass

pytestmark = pytest.mark.slow


def test_weather_prepare_reads_every_photo_and_keeps_duplicates_in_one_split(weather_dir, tmp_path):
    data = photoclass.prepare(weather_dir, out=tmp_path / "w", cache_dir=tmp_path / "cache", progress=False)
    s = data.summary
    assert s["usable"] == 1121 and s["skipped"] == 0
    assert {c: v["total"] for c, v in s["classes"].items()} == {
        "cloudy": 300,
        "rain": 214,
        "shine": 253,
        "sunrise": 354,
    }
    assert s["duplicates"]["byte_identical_groups"] >= 24
    assert s["duplicates"]["near_identical_groups"] > s["duplicates"]["byte_identical_groups"]
    assert s["leaks"]["naive_split_test_with_twin_in_train"] > 0
    splits_of_group = defaultdict(set)
    with open(tmp_path / "w" / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            splits_of_group[row["group"]].add(row["split"])
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert s["converted"] >= 10  # GIF, PNG and grayscale files named .jpg are read, not skipped


def test_banded_duplicate_search_gives_the_exact_searchs_groups_on_the_weather_photos(weather_dir, tmp_path):
    from photoclass.data import prepare as prepare_module
    from photoclass.data.dedupe import find_duplicates

    seen = {}

    def recorded(keys, phashes, thumbs, **limits):
        seen.update(keys=keys, phashes=phashes, thumbs=thumbs)
        return find_duplicates(keys, phashes, thumbs, **limits)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare_module, "find_duplicates", recorded)
        photoclass.prepare(weather_dir, cache_dir=tmp_path / "cache", image_size=32, progress=False)
    exact = find_duplicates(seen["keys"], seen["phashes"], seen["thumbs"], method="exact")
    banded = find_duplicates(seen["keys"], seen["phashes"], seen["thumbs"], method="bands")
    assert exact.count == 111 and exact.near_groups > 0  # the search has real pairs to find
    assert banded.group.tolist() == exact.group.tolist()
    assert (banded.identical_groups, banded.near_groups) == (exact.identical_groups, exact.near_groups)
