"""The first training steps of a model on a GPU, per memory layout and precision.

Each layout and precision runs in a fresh process, since cuDNN's warm-up (choosing and
building kernels for each new shape) happens once per process: random batches of 32 at the
model's input size, five steps, one batch of 17 (an epoch's last), then one evaluation batch.

    python benchmarks/gpu_warmup.py                               # efficientnet-lite2-ms on cuda
    python benchmarks/gpu_warmup.py --model efficientnet-lite0 --timeout 120
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = (("channels_last", "bf16"), ("contiguous", "bf16"), ("channels_last", "fp32"), ("contiguous", "fp32"))


def one_case(model: str, device: str, layout: str, precision: str) -> None:
    import torch
    import torch.nn.functional as F

    from photoclass.core.device import autocast
    from photoclass.models.registry import create_model, model_info

    size = model_info(model).input_spec.size
    fmt = getattr(torch, f"{layout}_format" if layout == "contiguous" else layout)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    net = create_model(model, num_classes=4).to(device, memory_format=fmt).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    seconds = []
    for batch in (32, 32, 32, 32, 32, 17):
        x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, 4, (batch,), device=device)
        sync()
        started = time.perf_counter()
        with autocast(device, precision):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        seconds.append(time.perf_counter() - started)
    net.eval()
    sync()
    started = time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        net(torch.randn(64, 3, size, size, device=device).contiguous(memory_format=fmt))
    sync()
    print(
        f"{layout:<15}{precision:<6}{seconds[0]:>11.2f}{max(seconds[1:5]):>12.2f}{seconds[5]:>12.2f}"
        f"{time.perf_counter() - started:>12.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite2-ms")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=45, help="seconds per case (default: %(default)s)")
    parser.add_argument("--case", nargs=2, metavar=("LAYOUT", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        one_case(args.model, args.device, *args.case)
        return
    print(f"{args.model} on {args.device}: seconds")
    print(f"{'layout':<15}{'prec':<6}{'first step':>11}{'steps 2-5':>12}{'batch of 17':>12}{'first eval':>12}")
    for layout, precision in CASES:
        command = [
            sys.executable,
            __file__,
            "--model",
            args.model,
            "--device",
            args.device,
            "--case",
            layout,
            precision,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            print(result.stdout.strip() or f"{layout:<15}{precision:<6}failed: {result.stderr.strip()[-300:]}")
        except subprocess.TimeoutExpired:
            print(f"{layout:<15}{precision:<6}{'over ' + str(args.timeout) + ' s':>11}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
