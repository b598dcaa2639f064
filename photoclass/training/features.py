"""Frozen layers run once: their outputs are cached, and only the layers above are trained.

`features`: the whole backbone is frozen and the classifier head trains on its pooled
features, a few milliseconds an epoch. `finetune`: the last blocks train too, on the cached
activations of the blocks below. Every photo is also encoded mirrored, a free augmentation.
`FeatureLoader` has the same `batches` interface as `BatchLoader`, so the ordinary `fit`
loop does the training.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..config import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from ..core.errors import PhotoclassError
from ..data.cache import ImageCache
from ..data.dataset import PreparedDataset
from ..core.progress import progress_bar
from ..core import distributed
from ..core.device import autocast
from ..data.loader import BatchLoader, shard_of
from ..models.registry import InputSpec, create_model
from .feature_cache import FeatureCache, encoder_key
from .openvino_encode import openvino_encoder, weights_in_bf16


class FeatureLoader:
    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        indices: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        self.shard = shard  # (rank, world): each global batch is split among the processes
        self.features = features  # (N, F) float32
        self.labels = labels  # (N,) long
        self.indices = indices  # positions in the dataset, for reports
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.encoder = "torch"  # what computed the features: torch, or openvino

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def batches(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (
            torch.from_numpy(np.random.default_rng(seed).permutation(len(self.labels)))
            if self.shuffle
            else torch.arange(len(self.labels))
        ).to(self.labels.device)
        for start in range(0, len(order), self.batch_size):
            chosen = shard_of(order[start : start + self.batch_size], *self.shard)
            yield self.features[chosen], self.labels[chosen]


@torch.no_grad()
def extract_features(
    encode: Callable[[torch.Tensor], torch.Tensor],
    loader: BatchLoader,
    *,
    flip: bool = False,
    desc: str = "features",
    progress: bool | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """`encode` of the loader's photos, in order, stacked; with `flip`, of their mirror images.
    The features are float32 whatever the `precision` of the arithmetic."""
    out, row = None, 0
    for x, _ in progress_bar(loader.batches(), total=len(loader), desc=desc, unit="batch", progress=progress):
        with autocast(x.device, precision):
            found = encode(x.flip(-1) if flip else x).float()
        if out is None:  # filled in place: the features are the only memory that grows with the photos
            out = torch.empty((len(loader.indices), *found.shape[1:]), dtype=torch.float32, device=found.device)
        out[row : row + len(found)] = found
        row += len(found)
    return out if out is not None else torch.empty(0)


def lowered(
    encode: Callable[[torch.Tensor], torch.Tensor], precision: str, device: torch.device | str = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`encode` as fast as this machine runs it in `precision`: for bf16, compiled by OpenVINO
    on a CPU where it is installed (`openvino_encode`), else with its frozen module's weights
    in bf16; for fp32, as it is. The module must be a copy of its own (`split_for_training`
    makes one)."""
    fast = openvino_encoder(encode, precision, torch.device(device))
    if fast is not None:
        return fast
    if precision == "bf16":
        weights_in_bf16(encode)
    return encode


def feature_loaders(
    encode: Callable[[torch.Tensor], torch.Tensor],
    dataset: PreparedDataset,
    spec: InputSpec,
    *,
    batch_size: int,
    flip_augment: bool,
    device: torch.device | str = "cpu",
    place: distributed.Processes = distributed.Processes(),
    precision: str = "fp32",
    progress: bool | None = None,
    reuse: bool = True,
) -> dict[str, FeatureLoader]:
    """Loaders of encoded photos for train (shuffled, with mirrored copies), val and test.

    `encode` must be a frozen module in eval mode (or its method), on `device`; the
    features stay there. Under torchrun each process encodes its share of the photos and
    all receive all features; the training loader then splits each batch among them. With
    `reuse` (one process), features are kept in the feature cache beside the decode cache,
    and photos already there are not encoded again."""
    device = torch.device(device)
    store = {
        flip: _feature_cache(encode, dataset, spec, precision, flip) if reuse and place.world == 1 else None
        for flip in (False, True)
    }
    encode = lowered(encode, precision, device)
    loaders = {}
    for split in ("train", "val", "test"):
        indices = dataset.indices(split)

        def encoded(flip: bool = False) -> torch.Tensor:
            mine = indices[place.shard(len(indices))] if len(indices) >= place.world else indices
            desc = f"{split} features{', mirrored' if flip else ''}"
            if store[flip] is not None:
                return _cached(
                    store[flip],
                    encode,
                    dataset,
                    spec,
                    mine,
                    flip=flip,
                    device=device,
                    precision=precision,
                    progress=progress,
                    desc=desc,
                )
            part = _encode(
                encode, dataset, spec, mine, flip=flip, device=device, precision=precision, progress=progress, desc=desc
            )
            return distributed.gather_rows(part, len(indices), place) if len(mine) < len(indices) else part

        features = encoded()
        labels = torch.as_tensor(np.asarray(dataset.labels)[indices], dtype=torch.long, device=device)
        loaders[split] = FeatureLoader(features, labels, indices, batch_size=batch_size)
        if split == "train":
            loaders["train_eval"] = loaders["train"]
            if flip_augment:
                features, labels = torch.cat([features, encoded(flip=True)]), torch.cat([labels, labels])
            loaders["train"] = FeatureLoader(
                features, labels, indices, batch_size=batch_size, shuffle=True, shard=(place.rank, place.world)
            )
    if not len(loaders["val"].labels):
        loaders["val"] = loaders["train_eval"]
    for loader in loaders.values():
        loader.encoder = getattr(encode, "engine", "torch")
    return loaders


def _encode(
    encode,
    dataset: PreparedDataset,
    spec: InputSpec,
    indices: np.ndarray,
    *,
    flip: bool,
    device: torch.device,
    precision: str,
    progress: bool | None,
    desc: str,
) -> torch.Tensor:
    # small batches keep activations in cache on a CPU: 20% faster than 64 here
    images = BatchLoader(
        dataset.images,
        dataset.labels,
        indices,
        batch_size=16 if device.type == "cpu" else 128,
        mean=spec.mean,
        std=spec.std,
        device=device,
    )
    return extract_features(encode, images, flip=flip, progress=progress, precision=precision, desc=desc)


def _feature_cache(encode, dataset: PreparedDataset, spec: InputSpec, precision: str, flip: bool):
    cache_dir = dataset.summary.get("cache", {}).get("dir")
    if dataset.keys is None or not cache_dir:
        return None
    return FeatureCache(cache_dir, encoder_key(encode, spec, precision=precision, flip=flip))


def _cached(
    store: FeatureCache,
    encode,
    dataset: PreparedDataset,
    spec: InputSpec,
    indices: np.ndarray,
    *,
    device: torch.device,
    **options,
) -> torch.Tensor:
    """The features of the photos at `indices`: from `store`, encoding (and storing) only the others."""
    keys = [dataset.keys[i] for i in indices]
    found, stored = store.load(keys)
    missing = np.flatnonzero(~found)
    fresh = _encode(encode, dataset, spec, indices[missing], device=device, **options) if len(missing) else None
    if fresh is not None:
        store.save([keys[i] for i in missing], fresh.cpu().numpy())
    if stored is None:
        return fresh
    features = torch.empty((len(indices), stored.shape[1]), dtype=torch.float32, device=device)
    features[torch.from_numpy(np.flatnonzero(found))] = torch.from_numpy(stored).to(device)
    if fresh is not None:
        features[torch.from_numpy(missing)] = fresh
    return features


def photo_features(
    paths: Sequence[Path],
    *,
    model: str,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    workers: int = 2,
    progress: bool | None = None,
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """The frozen `model`'s pooled features of the photos at `paths`, through the decode cache
    and the feature cache: (features (N_ok, F) float32, the positions in `paths` that decoded,
    every path's reason it did not decode, "" when it did)."""
    net = create_model(model, 2)
    if not hasattr(net, "split_for_training"):
        raise PhotoclassError(
            f"{model} cannot be used as a frozen feature extractor here. HINT: pass an EfficientNet-Lite "
            "model, e.g. efficientnet-lite0 or efficientnet-lite2-ms."
        )
    spec = net.input_spec
    encode, _ = net.split_for_training(0)
    cache = ImageCache(cache_dir, spec.size, max_pixels=DEFAULT_MAX_PIXELS, min_side=DEFAULT_MIN_SIDE)
    try:
        keys = cache.content_keys(list(paths), workers)
        with progress_bar(total=len(keys), desc="decode", unit="img", progress=progress) as bar:
            entries, _ = cache.decode_missing(keys, list(paths), workers=workers, progress=bar.update)
    finally:
        cache.close()
    reasons = [entries[k].reason or "not decoded" if entries[k].status != "ok" else "" for k in keys]
    usable = np.array([i for i, reason in enumerate(reasons) if not reason], dtype=np.int64)
    good = [keys[i] for i in usable]
    photos = SimpleNamespace(  # the part of a PreparedDataset that encoding reads
        images=cache.images([entries[k] for k in good]), labels=np.zeros(len(good), np.int64), keys=good
    )
    store = FeatureCache(cache.root, encoder_key(encode, spec, precision="fp32", flip=False))
    found = _cached(
        store,
        lowered(encode, "fp32", device),
        photos,
        spec,
        np.arange(len(good)),
        flip=False,
        device=torch.device(device),
        precision="fp32",
        progress=progress,
        desc="features",
    )
    return found, usable, reasons
