"""Any timm backbone by name (`resnet50`, `convnext_tiny.fb_in22k_ft_in1k`, `hf-hub:ORG/REPO`),
with photoclass's classifier on its pooled features; `NAME-ms` also feeds it the mean and
spread of up to four intermediate stages, as `efficientnet-lite2-ms` does.

Weights are found offline-first, in this order: the Hugging Face cache (`HF_HOME`,
`HF_HUB_CACHE`, shared with every other HF tool), `weights=FILE|DIR` (a safetensors file, or
a timm- or HF-format folder), then a download from the Hub when the machine is online: one
HEAD request of at most HUB_PROBE_SECONDS says so before huggingface_hub's retries could.
Nothing is unpickled: safetensors, or `torch.load(weights_only=True)`. The input contract
(size, mean, std) comes from the weights' pretrained config.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import sys
import threading
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..core.errors import PhotoclassError
from .layers import Standardize
from .input_spec import InputSpec

CPU_MAX_SIZE = 256  # a larger configured size (DINOv2: 518 px) is brought down to DEFAULT_LARGE_SIZE
DEFAULT_LARGE_SIZE = 224  # DINOv2 at 518 px: 5.3x the patches, 7.6x the FLOPs with attention
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MULTISCALE = "-ms"  # the suffix asking for the multi-stage statistics head
MAX_TAPS = 4
HUB_PROBE_SECONDS = 3  # hf_hub_download retries an unreachable Hub for about 55 s before it gives up


def _timm():
    try:
        import timm
    except ImportError as e:  # torchvision missing or built for another torch
        raise PhotoclassError(
            f"timm backbones need timm and a torchvision that fits this torch ({e}). "
            "HINT: pip install 'torch==2.14.1' 'torchvision==0.29.1' timm"
        ) from None
    return timm


def split_name(name: str) -> tuple[str, bool]:
    """(the timm name, whether the multi-stage statistics head is asked for by `-ms`)."""
    return (name[: -len(MULTISCALE)], True) if name.endswith(MULTISCALE) else (name, False)


def is_timm_name(name: str) -> bool:
    """Whether `name` names a timm architecture, with or without a pretrained tag, or a Hub repo."""
    name, _ = split_name(name)
    if name.startswith("hf-hub:"):
        return True
    try:
        timm = _timm()
    except PhotoclassError:
        return False
    return timm.is_model(name.split(".")[0])


@lru_cache(maxsize=None)
def pretrained_config(name: str) -> dict:
    """timm's pretrained config of `name` (hub id, input size, mean, std, licence); {} for a
    bare architecture without one, or an `hf-hub:` repo whose config is not on this machine."""
    timm, name = _timm(), split_name(name)[0]
    if name.startswith("hf-hub:"):
        config = _cached_hub_config(name[len("hf-hub:") :])
        return (
            {
                **config.get("pretrained_cfg", {}),
                "hf_hub_id": name[len("hf-hub:") :],
                "architecture": config.get("architecture"),
            }
            if config
            else {"hf_hub_id": name[len("hf-hub:") :]}
        )
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)  # a bare name: its default tag
    return cfg.to_dict() if cfg is not None else {}


def input_spec(name: str, size: int | None = None) -> tuple[InputSpec, str]:
    """The weights' input contract at `size` (default: theirs, capped for a CPU), and a note
    when the size was chosen rather than taken as configured."""
    cfg = pretrained_config(name)
    channels, configured, _ = cfg.get("input_size", (3, 224, 224))
    note = ""
    if size is None:
        size = configured
        if configured > CPU_MAX_SIZE:
            size = DEFAULT_LARGE_SIZE
            note = (
                f"{name} is configured for {configured} px; photoclass uses {size} px, about "
                f"{(configured / size) ** 2:.1f}x less work per photo. HINT: --image-size {configured} for theirs"
            )
    mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
    return InputSpec(int(size), tuple(float(v) for v in mean), tuple(float(v) for v in std), int(channels)), note


def architecture(name: str) -> str:
    """The timm architecture that `name` builds (`convnext_tiny` for `convnext_tiny.fb_in22k`)."""
    name = split_name(name)[0]
    if name.startswith("hf-hub:"):
        found = pretrained_config(name).get("architecture")
        if not found:
            raise PhotoclassError(
                f"{name}'s config.json is not on this machine, so its architecture is unknown. "
                f"HINT: photoclass models pull {name}"
            )
        return found
    return name.split(".")[0]


class TimmClassifier(nn.Module):
    """A timm backbone without its classifier, then dropout and photoclass's linear classifier;
    with `multiscale`, the classifier also sees the mean and spread of up to four intermediate
    stages, standardized with statistics of the training photos."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        *,
        size: int,
        dropout: float = 0.0,
        in_channels: int = 3,
        multiscale: bool = False,
    ):
        super().__init__()
        timm, arch = _timm(), architecture(name)
        try:  # ViTs take the input size, for their position embeddings; CNNs refuse it
            self.body = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_channels, img_size=size)
        except TypeError:
            self.body = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_channels)
        self._taps = _middle_stages(len(self.body.feature_info)) if multiscale else []
        pooled = getattr(self.body, "head_hidden_size", None) or self.body.num_features  # MobileNetV3: after conv_head
        self.num_features = pooled + sum(2 * self.body.feature_info[i]["num_chs"] for i in self._taps)
        self._standardize = Standardize(self.num_features) if self._taps else nn.Identity()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_features)
        if not self._taps:
            return self.body(x)
        final, stages = self.body.forward_intermediates(x, indices=self._taps, output_fmt="NCHW")
        stats = [s for stage in stages for s in (stage.float().mean(dim=(2, 3)), stage.float().std(dim=(2, 3)))]
        return torch.cat([*stats, self.body.forward_head(final, pre_logits=True).float()], 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # (B, num_features) -> (B, classes)
        return self._fc(self._dropout(self._standardize(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def split_for_training(self, train_blocks: int):
        """(frozen encoder, trainable classifier): the encoder runs once over the photos.
        A timm backbone has no cut common to every architecture, so fine-tuning its last
        blocks uses `freeze_below` instead."""
        if train_blocks:
            raise PhotoclassError(
                "A timm backbone cannot be cut into cached and trained blocks. "
                "HINT: freeze_below(n) trains its last n blocks on pixels."
            )
        frozen = self.inference_copy()
        return frozen.forward_features, nn.Sequential(self._standardize, self._dropout, self._fc)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters in timm's own layer groups (about a block each), input to output,
        then the classifier: the units of `freeze_below` and of discriminative rates."""
        named = dict(self.body.named_parameters())
        matcher = self.body.group_matcher(coarse=False)
        groups = [[named[n] for n in names] for names in _timm().models.group_parameters(self.body, matcher).values()]
        if len(groups) > 1 and all(p.ndim <= 1 for p in groups[-1]):  # a final norm alone goes with the last block
            norm = groups.pop()
            groups[-1] += norm
        return [g for g in groups if g] + [list(self._fc.parameters())]

    def freeze_below(self, train_blocks: int) -> TimmClassifier:
        """Freezes all but the last `train_blocks` layer groups and the classifier. Returns self."""
        if self._taps:
            raise PhotoclassError(
                "Fine-tuning blocks of a multi-stage (-ms) backbone is not supported: its classifier "
                "reads standardized statistics of frozen stages. HINT: --strategy features, or the "
                "name without -ms."
            )
        groups = self.layer_groups()
        for group in groups[: max(0, len(groups) - 1 - train_blocks)]:
            for p in group:
                p.requires_grad_(False)
        return self

    def inference_copy(self) -> TimmClassifier:
        return copy.deepcopy(self).eval()

    def gradcam_layer(self) -> nn.Module | None:
        """The last convolution of a CNN; None for a transformer, whose only convolution cuts
        the photo into patches and says nothing of where the evidence was."""
        convs = [m for m in self.body.modules() if isinstance(m, nn.Conv2d)]
        if not convs or (len(convs) == 1 and hasattr(self.body, "patch_embed")):
            return None
        return convs[-1]

    def load_backbone(self, path: Path) -> None:
        """The pretrained weights at `path` into the backbone (its own classifier left out)."""
        _load_into(self.body, path)


def build(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    input_size: int | None = None,
    dropout: float = 0.0,
    in_channels: int = 3,
    weights: str | os.PathLike | None = None,
) -> TimmClassifier:
    """A TimmClassifier of `name`; with `pretrained`, its backbone weights found offline-first."""
    spec, _ = input_spec(name, input_size)
    model = TimmClassifier(
        name, num_classes, size=spec.size, dropout=dropout, in_channels=in_channels, multiscale=split_name(name)[1]
    )
    if pretrained:
        model.load_backbone(find_weights(name, weights))
    return model


def imagenet_classifier(name: str, weights: str | os.PathLike | None = None) -> nn.Module:
    """`name` with its own 1,000-class ImageNet head and weights, for `predict imagenet --model NAME`."""
    cfg = pretrained_config(name)
    if cfg.get("num_classes", 1000) != 1000:
        raise PhotoclassError(
            f"The weights of {name} have no ImageNet-1k classifier ({cfg.get('num_classes')} "
            "classes). HINT: pick a tag trained or fine-tuned on ImageNet-1k, e.g. *.in1k."
        )
    spec, _ = input_spec(name)
    timm = _timm()
    try:
        model = timm.create_model(architecture(name), pretrained=False, img_size=spec.size)
    except TypeError:
        model = timm.create_model(architecture(name), pretrained=False)
    _load_into(model, find_weights(name, weights))
    model.input_spec = spec
    return model


def find_weights(name: str, weights: str | os.PathLike | None = None, *, download: bool | None = None) -> Path:
    """The weights file of `name`: `weights` if given, else the HF cache, else a download when
    online (or when `download` is True). A one-line error says where it looked."""
    if weights is not None:
        return _weights_at(Path(weights).expanduser())
    repo = pretrained_config(name).get("hf_hub_id")
    if not repo:
        raise PhotoclassError(
            f"{name} has no pretrained weights in timm. HINT: --strategy scratch trains it from "
            "scratch, or --weights FILE gives weights of your own."
        )
    from huggingface_hub import constants

    cached = _cached_weights(repo)
    if cached is not None:
        return cached
    if download is False or (download is None and constants.HF_HUB_OFFLINE):
        raise _offline(name, repo)
    return pull(name)


def pull(name: str) -> Path:
    """Download the weights of `name` (and its config) into the Hugging Face cache, with a progress bar."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo = pretrained_config(name).get("hf_hub_id")
    if not repo:
        raise PhotoclassError(
            f"{name} has no pretrained weights to pull. HINT: `photoclass models '*{name}*'` lists "
            "the names with weights."
        )
    unreachable = None if constants.HF_HUB_OFFLINE else hub_unreachable(constants.ENDPOINT)
    if constants.HF_HUB_OFFLINE or unreachable:
        cached = _cached_weights(repo)
        if cached is None:
            raise _offline(name, repo, unreachable)
        return cached
    for file in WEIGHT_FILES:
        try:
            path = Path(hf_hub_download(repo, file))
        except EntryNotFoundError as e:
            if _lost_the_hub(e):  # it answered the probe, then stopped: not a sign the file is missing
                raise _offline(name, repo, f"{type(e.__cause__).__name__} while downloading") from None
            continue  # the repo keeps its weights under the next name
        except Exception as e:  # no network, no such repo, no permission
            raise PhotoclassError(
                f"Could not download the weights of {name} from the Hugging Face Hub ({repo}): "
                f"{type(e).__name__}. HINT: check the network; offline, copy a Hugging Face cache "
                "that has them (HF_HOME), or pass --weights FILE"
            ) from None
        try:
            hf_hub_download(repo, "config.json")
        except Exception:  # older repos have none; the weights are what matters
            pass
        pretrained_config.cache_clear()
        return path
    raise PhotoclassError(
        f"{repo} on the Hugging Face Hub holds no {' or '.join(WEIGHT_FILES)}. HINT: pass "
        "--weights FILE with weights of this architecture."
    )


@lru_cache(maxsize=None)
def hub_unreachable(endpoint: str) -> str | None:
    """Why the Hugging Face Hub at `endpoint` cannot be reached, or None: one HEAD request through
    huggingface_hub's own client (its proxies), once per process. Any HTTP answer counts as reached."""
    from huggingface_hub.utils import get_session

    failures: list[str | None] = []

    def probe() -> None:
        try:
            get_session().head(endpoint, timeout=HUB_PROBE_SECONDS, follow_redirects=False)
            failures.append(None)
        except Exception as e:  # httpx ConnectError (a name that does not resolve, a refused port), a timeout, ...
            failures.append(" ".join(f"{type(e).__name__}: {e}".split())[:160])

    thread = threading.Thread(target=probe, daemon=True)  # a DNS lookup ignores the timeout; the join does not
    thread.start()
    thread.join(HUB_PROBE_SECONDS + 0.5)
    return failures[0] if failures else f"no answer in {HUB_PROBE_SECONDS} s"


def _offline(name: str, repo: str, unreachable: str | None = None) -> PhotoclassError:
    """The one-line error for weights neither cached nor downloadable, with why the Hub is out of reach."""
    from huggingface_hub import constants

    why = f" (the Hugging Face Hub at {constants.ENDPOINT} could not be reached: {unreachable})" if unreachable else ""
    return PhotoclassError(
        f"The weights of {name} are not on this machine and it is offline{why}: looked in the "
        f"Hugging Face cache {constants.HF_HUB_CACHE} for {repo}. HINT: on a machine online, "
        f"`photoclass models pull {name}`, then copy the cache; or --weights FILE"
    )


def _lost_the_hub(error: Exception) -> bool:
    """Whether hf_hub_download's 'entry not found' is a network failure in disguise: its subclass
    LocalEntryNotFoundError says the Hub could not be asked and no copy was cached."""
    from huggingface_hub.errors import FileMetadataError, LocalEntryNotFoundError

    return isinstance(error, LocalEntryNotFoundError) and not isinstance(error.__cause__, FileMetadataError)


def _cached_weights(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for file in WEIGHT_FILES:
        cached = try_to_load_from_cache(repo, file)
        if isinstance(cached, str):
            return Path(cached)
    return None


def closest_names(name: str, known) -> list[str]:
    """The registered names and timm architectures nearest to `name`, for an unknown-name error."""
    candidates = list(known)
    try:
        candidates += _timm().list_models(f"*{name.split('.')[0][:4]}*")
    except PhotoclassError:
        pass
    return difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)


def timm_names(pattern: str) -> list[str]:
    """timm's pretrained names (with their tags) matching a glob."""
    try:
        return _timm().list_models(pattern, pretrained=True)
    except PhotoclassError:
        return []


def weights_on_machine(name: str) -> bool:
    repo = pretrained_config(name).get("hf_hub_id")
    return bool(repo) and _cached_weights(repo) is not None


def _middle_stages(count: int) -> list[int]:
    """Up to MAX_TAPS feature levels between the first and the last, evenly spaced."""
    middle = list(range(1, count - 1))
    if len(middle) <= MAX_TAPS:
        return middle
    return sorted({middle[round(i * (len(middle) - 1) / (MAX_TAPS - 1))] for i in range(MAX_TAPS)})


def _load_into(module: nn.Module, path: Path) -> None:
    """Every tensor of `module` from the weights at `path`; a one-line error for any missing."""
    state = _read_state(path)
    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:  # e.g. resamples a ViT's position embeddings to this size
        try:
            state = filter_fn(state, module)
        except Exception:  # a filter for another checkpoint layout: the tensors are checked below
            pass
    own = module.state_dict()  # a backbone built with num_classes=0 has no classifier to fill
    state = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    missing = sorted(set(own) - set(state))
    if missing:
        raise PhotoclassError(
            f"{path} does not fit {type(module).__name__}: {len(missing)} tensors missing, "
            f"e.g. {missing[:3]}. HINT: pass the weights of this architecture."
        )
    module.load_state_dict(state)


def _weights_at(path: Path) -> Path:
    if path.is_dir():
        for file in WEIGHT_FILES:
            if (path / file).is_file():
                return path / file
        raise PhotoclassError(
            f"--weights {path} holds no {' or '.join(WEIGHT_FILES)}. HINT: pass the file itself, "
            "or a timm- or Hugging Face-format folder."
        )
    if not path.is_file():
        raise PhotoclassError(f"--weights {path}: no such file or folder. HINT: pass a safetensors file or a folder.")
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as e:
        raise PhotoclassError(
            f"{path} is not a weights file photoclass can read safely ({str(e)[:120]}). HINT: pass a safetensors file."
        ) from None
    return state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state


def _cached_hub_config(repo: str) -> dict:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, "config.json")
    if not isinstance(path, str):
        return {}
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
