"""Temperature scaling (Guo et al., 2017): one number that makes confidences mean what they say.

Dividing the logits by T > 1 softens over-confident probabilities without changing any
prediction. T is fitted on the validation split, saved in model.json, and applied by every
way of using the model (evaluation, predict, serve, the ONNX export).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, loss=F.cross_entropy) -> float:
    """The T > 0 that minimizes `loss(logits / T, labels)`: the negative log-likelihood of class
    indices under softmax, or another (binary cross-entropy for label sets). For class indices, 1
    when every prediction is right, since then any T < 1 lowers the loss and the fit would only
    sharpen without limit (T -> 0), which small validation splits often invite."""
    if not len(labels) or (labels.ndim == 1 and bool((logits.argmax(1) == labels).all())):
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach().float()

    def closure():
        optimizer.zero_grad()
        value = loss(logits / log_t.exp(), labels)
        value.backward()
        return value

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return round(min(max(temperature, 0.05), 20.0), 6)  # a degenerate fit cannot run away


class Calibrated(nn.Module):
    """`model` whose logits are divided by `temperature` (what the ONNX export holds)."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature
