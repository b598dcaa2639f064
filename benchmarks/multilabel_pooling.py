"""Which pooling of frozen EfficientNet-Lite2 features fits several labels a photo best.

Each variant pools the backbone's activations into features, fits one logistic regression per
label (photoclass's one-solve head: C by grouped cross-validation), on the training photos and
their mirror images, and scores the test photos (mean of the photo and its mirror) by mAP and by
macro F1 at each label's best validation cut. The `regions` variants score each label at every
cell and add how far its best cell stands above its mean cell (CSRA's max), with the weights of
the mean's fit (`regions, no refit`) or refitted through the max (`regions ...`).

    python benchmarks/multilabel_mosaics.py --out /tmp/mosaics --photos 800
    python benchmarks/multilabel_pooling.py /tmp/mosaics/labels.csv --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, f1_score

import photoclass
from photoclass.models.layers import region_means
from photoclass.models.registry import create_model
from photoclass.tasks import MULTI_LABEL
from photoclass.tasks.multi_label import best_threshold
from photoclass.training.probe import choose_c, fit_logistic


@torch.no_grad()
def activations(dataset, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(4 stages' mean and spread, the last feature map) of every photo, as it is and mirrored."""
    body = create_model("efficientnet-lite2-ms", len(dataset.classes), input_size=size).inference_copy().body
    found = []
    for flip in (False, True):
        stats, maps = [], []
        for start in range(0, len(dataset), 32):
            x = torch.from_numpy(np.stack([dataset.images[i] for i in range(start, min(len(dataset), start + 32))]))
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1  # the Lite models' input convention
            x = body.bn1(body.conv_stem(x.flip(-1) if flip else x))
            taps = []
            for i, stage in enumerate(body.blocks):
                x = stage(x)
                if i in (2, 3, 4, 5):
                    taps += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            stats.append(torch.cat(taps, 1))
            maps.append(body.bn2(body.conv_head(x)))
        found.append((torch.cat(stats), torch.cat(maps)))
    return found


POOLINGS = {
    "-ms (stages' mean and spread, the head's mean)": lambda t, h: torch.cat([t, h.mean(dim=(2, 3))], 1),
    "the head's mean only": lambda t, h: h.mean(dim=(2, 3)),
    "-ms + max per channel": lambda t, h: torch.cat([t, h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1),
    "-ms + GeM (p=3)": lambda t, h: torch.cat(
        [t, h.mean(dim=(2, 3)), h.clamp(min=1e-6).pow(3).mean(dim=(2, 3)) ** (1 / 3)], 1
    ),
    "-ms + best quadrant per channel": lambda t, h: torch.cat(
        [t, h.mean(dim=(2, 3)), region_means(h, 2).unflatten(1, (4, -1)).amax(1)], 1
    ),
}


def scores(probabilities, labels, val, test) -> dict:
    """Test mAP and macro F1 at each label's best cut on validation."""
    pv, yv, pt, yt = probabilities[val], labels[val], probabilities[test], labels[test]
    cuts = np.array([best_threshold(pv[:, i], yv[:, i]) for i in range(labels.shape[1])])
    return {
        "mAP": round(float(average_precision_score(yt, pt)), 4),
        "macro_F1": round(float(f1_score(yt, pt >= cuts, average="macro", zero_division=0)), 4),
    }


def fit(features: list[torch.Tensor], y: torch.Tensor, train, groups, seed: int):
    """(mean, std, W, b, C): the one-solve head on the training photos and their mirror images."""
    x = torch.cat([features[0][train], features[1][train]]).double()
    mean, std = x.mean(0), x.std(0)
    std = torch.maximum(std, 0.1 * std.median())
    z = (x - mean) / std
    ys = torch.cat([y[train], y[train]])
    c, _ = choose_c(z, ys, np.concatenate([groups[train]] * 2), y.shape[1], seed=seed, task=MULTI_LABEL)
    w, b = fit_logistic(z, ys, y.shape[1], c, task=MULTI_LABEL)
    return mean, std, w, b, c


def regions(found, y, split, groups, seed, grid: int, refit: bool) -> dict:
    """The -ms head plus each label's best cell above its mean cell, on a grid x grid partition."""
    pooled = [POOLINGS["-ms (stages' mean and spread, the head's mean)"](t, h) for t, h in found]
    cells = [region_means(h, grid).unflatten(1, (grid * grid, -1)).double() for _, h in found]
    train = split == "train"
    mean, std, w, b, c = fit(pooled, y, train, groups, seed)
    head = slice(pooled[0].shape[1] - cells[0].shape[2], pooled[0].shape[1])

    def logits(k, rows, w, b):
        s = ((cells[k][rows] - mean[head]) / std[head]) @ w[:, head].T  # each label's score at each cell
        return ((pooled[k][rows].double() - mean) / std) @ w.T + b + s.amax(1) - s.mean(1)

    if refit:
        w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
        optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=60, history_size=20, line_search_fn="strong_wolfe")
        loss_fn, n = MULTI_LABEL.loss_fn(), 2 * int(train.sum())

        def closure():
            optimizer.zero_grad()
            loss = sum(loss_fn(logits(k, train, w, b), y[train]) for k in (0, 1)) / 2 + (w * w).sum() / (2 * c * n)
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
    with torch.no_grad():
        every = np.ones(len(y), bool)
        p = sum(torch.sigmoid(logits(k, every, w, b)) for k in (0, 1)).numpy() / 2
    return scores(p, y.numpy(), split == "val", split == "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a multi-label CSV, e.g. multilabel_mosaics.py's labels.csv")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed")
    parser.add_argument("--image-size", type=int, default=260)
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = photoclass.prepare(args.data, image_size=args.image_size, seed=args.seed, progress=False)
    found = activations(dataset, args.image_size)
    y, split, groups = torch.from_numpy(dataset.labels).double(), dataset.splits, dataset.groups
    for name, pool in POOLINGS.items():
        features = [pool(t, h) for t, h in found]
        mean, std, w, b, _ = fit(features, y, split == "train", groups, args.seed)
        p = sum(torch.sigmoid(((f.double() - mean) / std) @ w.T + b) for f in features).numpy() / 2
        print(json.dumps({"seed": args.seed, "pooling": name, **scores(p, y.numpy(), split == "val", split == "test")}))
    cells = found[0][1].shape[-1]
    for grid, refit in ((cells, False), (3, True), (cells, True)):
        name = f"regions {grid}x{grid}{'' if refit else ', no refit'}"
        print(
            json.dumps({"seed": args.seed, "pooling": name, **regions(found, y, split, groups, args.seed, grid, refit)})
        )


if __name__ == "__main__":
    main()
