"""Batches from the decode cache (or decoded as read): seeded shuffling, augmentation, normalization."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..config import GREY_WEIGHTS
from ..core.device import memory_format
from .augment import AugmentSpec, augment_batch

PRELOAD_LIMIT_BYTES = 1 << 30  # smaller splits are copied into RAM once; larger stay mapped


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, 3, H, W) floats in [0, 1] -> (x - mean) / std, per channel; with one mean and std
    (a 1-channel input contract) the photo is made grey first: (B, 1, H, W)."""
    if len(mean) == 1 and x.shape[1] == 3:
        x = (x * torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1] (a view: channels last in memory)."""
    return pixels.permute(0, 3, 1, 2).float().div_(255)


def shard_of(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Process `rank`'s part of a global batch: every world-th item (at least one each)."""
    if world == 1:
        return batch
    return batch[rank::world] if len(batch) >= world else batch[[rank % len(batch)]]


class BatchLoader:
    """Yields (inputs, labels) for the photos at `indices` of a prepared dataset, on `device`.

    Shuffling and augmentation draw only from the `seed` passed to `batches`, so an epoch
    is reproduced exactly from (run seed, epoch), also after a resume. The uint8 pixels
    travel to the device (pinned, without blocking); conversion, augmentation and
    normalization run there.
    """

    def __init__(
        self,
        images,
        labels: np.ndarray,
        indices: np.ndarray,
        *,
        batch_size: int,
        mean,
        std,
        augment: AugmentSpec | None = None,
        shuffle: bool = False,
        device: torch.device | str = "cpu",
        shard: tuple[int, int] = (0, 1),
        channels_last: bool | None = None,
    ):
        self.images = images
        self.device = torch.device(device)
        self.memory_format = memory_format(self.device, channels_last)  # auto: on a CPU only
        self.shard = shard  # (rank, world): each global batch is split among the processes
        self.labels = torch.as_tensor(np.asarray(labels)[indices], dtype=torch.long)
        self.indices = np.asarray(indices)
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.augment = augment if augment is not None and augment.enabled else None
        self.shuffle = shuffle
        self._pixels = None
        self.streamed = getattr(images, "streamed", False)  # decoded on each read: read once, ahead
        if (
            not self.streamed
            and len(self.indices)
            and np.prod(images.shape[1:]) * len(self.indices) <= PRELOAD_LIMIT_BYTES
        ):
            in_ram_in_order = (
                type(images) is np.ndarray
                and len(self.indices) == len(images)
                and np.array_equal(self.indices, np.arange(len(images)))
            )
            # (N, H, W, 3) uint8; arrays already in RAM and in order are used as they are, not copied
            self._pixels = torch.from_numpy(images if in_ram_in_order else images[self.indices])
            if self.device.type == "cuda":
                self._pixels = self._pixels.pin_memory()

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def batches(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = np.arange(len(self.indices))
        if self.shuffle:
            order = np.random.default_rng(seed).permutation(len(order))
        rank, world = self.shard
        generator = torch.Generator().manual_seed(seed + 7919 * rank)  # each process its own augmentations
        chunks = [
            shard_of(order[start : start + self.batch_size], rank, world)
            for start in range(0, len(order), self.batch_size)
        ]
        for chosen, pixels in self._read(chunks):
            labels = self.labels[torch.from_numpy(chosen)]
            if self.device.type != "cpu":
                pixels = pixels.pin_memory() if self.device.type == "cuda" else pixels
                pixels = pixels.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            x = to_float(pixels)
            if self.augment is not None:
                x = augment_batch(x, self.augment, generator)
            x = normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)
            yield x, labels

    def _read(self, chunks: list[np.ndarray]) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(chunk, its uint8 pixels) in turn; streamed photos are decoded a batch ahead, while
        the model works on the one before."""

        def pixels(chosen: np.ndarray) -> torch.Tensor:
            return (
                self._pixels[torch.from_numpy(chosen)]
                if self._pixels is not None
                else torch.from_numpy(self.images[self.indices[chosen]])
            )

        if not self.streamed or len(chunks) < 2:
            yield from ((chosen, pixels(chosen)) for chosen in chunks)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as ahead:
            coming = ahead.submit(pixels, chunks[0])
            for i, chosen in enumerate(chunks):
                ready = coming.result()
                if i + 1 < len(chunks):
                    coming = ahead.submit(pixels, chunks[i + 1])
                yield chosen, ready
