"""Loading released Video-FocalNet checkpoints and inflating ImageNet FocalNet weights.

The parallel design keeps the released parameter names, so a released checkpoint is checked
(every key used, none missing, shapes equal) and loaded as is. Image weights come in two layouts:
the released FocalNet one (`patch_embed.*`, `layers.i.downsample` closing stage i) and timm's
(`stem.*`, `layers.i.downsample` opening stage i, 1x1 convs for `f`/`proj`); both are converted to
released names, then mapped onto the video model's design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
import torch.nn as nn

from vfn.errors import first_line

StateDict = dict[str, torch.Tensor]


class WeightsError(ValueError):
    """A file that is not a checkpoint, or weights that do not fit the model (one-line message)."""


def read_state_dict(source: StateDict | str | PathLike, mmap: bool = False) -> StateDict:
    """A state dict from a file (`{"model": sd}`, `{"state_dict": sd}` or a bare sd) or a dict.

    `mmap`: map the file instead of reading it (shapes only, e.g. to check that weights fit);
    files in torch's legacy (pre-zip) format are read whole."""
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"{path}: no such checkpoint file")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip_checkpoint(path))
        except Exception as e:  # pickle errors, zip errors, unsafe globals ...
            raise WeightsError(f"{path}: not a loadable checkpoint ({first_line(e)})") from None
        where = str(path)
    else:
        where = "state dict"
    if not isinstance(source, dict):
        raise WeightsError(f"{where}: expected a dict of tensors, got {type(source).__name__}")
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(source.get(wrapper), dict):
            source = source[wrapper]
            break
    sd = {k.removeprefix("module."): v for k, v in source.items()}
    bad = next((k for k, v in sd.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None or not sd:
        raise WeightsError(f"{where}: not a model state dict (first non-tensor entry: {bad!r})")
    return sd


def is_zip_checkpoint(path: Path) -> bool:
    """torch.save's default (zip) format, the one `torch.load(mmap=True)` can map."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def first_mismatch(model_sd: StateDict, sd: StateDict) -> str | None:
    """The first reason `sd` does not load strictly into a model whose state dict is `model_sd`
    (an unexpected key, a shape, a missing key), or None when it fits."""
    for k, v in sd.items():
        if k not in model_sd:
            return f"unexpected key {k!r} {tuple(v.shape)}"
        if model_sd[k].shape != v.shape:
            return f"shape mismatch at {k!r}: checkpoint {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
    missing = [k for k in model_sd if k not in sd]
    if missing:
        return f"missing key {missing[0]!r} ({len(missing)} missing in all)"
    return None


def load_released_weights(model: nn.Module, source: StateDict | str | PathLike) -> nn.Module:
    """Load a released Video-FocalNet checkpoint (file or state dict): every key used, none missing."""
    if getattr(model, "design", "parallel") != "parallel":
        raise WeightsError(
            f"released checkpoints are for design 'parallel', the model is {model.design!r}; "
            "use load_image_weights for other designs"
        )
    sd = read_state_dict(source)
    problem = first_mismatch(model.state_dict(), sd)
    if problem:
        raise WeightsError(f"checkpoint does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(sd, strict=True)
    return model


def save_released_weights(model: nn.Module, path: str | PathLike) -> None:
    """Save in the released layout (`{"model": state_dict}`), loadable by the published code."""
    if getattr(model, "design", "parallel") != "parallel":
        raise WeightsError("only the 'parallel' design has a released layout")
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


# --------------------------------------------------------------------------------------------
# A video checkpoint -> a model for fine-tuning


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)  # model keys loaded from the checkpoint
    retimed: list[str] = field(default_factory=list)  # subset of `copied` re-inflated to another tubelet size
    initialised: list[str] = field(default_factory=list)  # model keys that keep their fresh init (the classifier)

    def summary(self) -> str:
        retimed = f" ({len(self.retimed)} re-inflated to the new tubelet size)" if self.retimed else ""
        fresh = f": {', '.join(self.initialised)}" if self.initialised else ""
        return f"copied {len(self.copied)} tensors{retimed}, re-initialised {len(self.initialised)}{fresh}"


def plan_video_transfer(model_sd: StateDict, sd: StateDict) -> tuple[TransferReport, StateDict]:
    """What of a video checkpoint `sd` goes into a model with state dict `model_sd`: everything,
    except a classifier of another class count (re-initialised) and 3D kernels of another tubelet
    size (re-inflated, `retime`). Any other difference is a WeightsError naming the first key.
    Shapes only: works on memory-mapped or `meta` tensors."""
    extra = [k for k in sd if k not in model_sd]
    if extra:
        raise WeightsError(f"checkpoint does not fit the model: unexpected key {extra[0]!r} ({len(extra)} in all; "
                           "another design, depth or focal level?)")
    report, load = TransferReport(), {}
    for key, target in model_sd.items():
        value = sd.get(key)
        if value is not None and value.shape == target.shape:
            load[key] = value
        elif key.startswith("head."):
            report.initialised.append(key)
            continue
        elif value is not None and (retimed := retime(value, target)) is not None:
            load[key] = retimed
            report.retimed.append(key)
        elif value is None:
            raise WeightsError(f"checkpoint does not fit the model: missing key {key!r}")
        else:
            raise WeightsError(f"checkpoint does not fit the model: shape mismatch at {key!r}: checkpoint "
                               f"{tuple(value.shape)} vs model {tuple(target.shape)} (only the classifier and the "
                               "tubelet size may differ)")
        report.copied.append(key)
    return report, load


def retime(kernel: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """A patch kernel spread over another temporal extent (a 2D kernel is one frame deep): summed
    over time, then divided evenly over the new depth, so a static clip keeps its response; None
    when the two are not such a pair."""
    def as_3d(shape: torch.Size) -> tuple[int, ...] | None:
        return tuple(shape) if len(shape) == 5 else (*shape[:2], 1, *shape[2:]) if len(shape) == 4 else None

    src, dst = as_3d(kernel.shape), as_3d(target.shape)
    if src is None or dst is None or src[:2] != dst[:2] or src[3:] != dst[3:]:
        return None
    summed = kernel.reshape(src).sum(2, keepdim=True)
    return (summed.repeat(1, 1, dst[2], 1, 1) / dst[2]).reshape(target.shape)


def load_video_weights(model: nn.Module, source: StateDict | str | PathLike) -> TransferReport:
    """Start fine-tuning from a video checkpoint (released layout or a vfn checkpoint's `model`):
    everything that fits is loaded, the classifier is re-initialised when the class count differs,
    a different tubelet size is re-inflated (a different frame count needs nothing: no weight
    depends on it). Returns what was copied and what was initialised."""
    model_sd = model.state_dict()
    report, load = plan_video_transfer(model_sd, read_state_dict(source))
    model.load_state_dict({k: v.to(model_sd[k].dtype) for k, v in load.items()}, strict=False)
    return report


# --------------------------------------------------------------------------------------------
# ImageNet FocalNet -> Video-FocalNet


@dataclass
class InflationReport:
    copied: list[str] = field(default_factory=list)  # video-model keys filled from the image checkpoint
    inflated: list[str] = field(default_factory=list)  # subset of `copied` inflated over time
    initialised: list[str] = field(default_factory=list)  # video-model keys left freshly initialised
    ignored: list[str] = field(default_factory=list)  # image keys with no place in the video model

    def summary(self) -> str:
        return (
            f"copied {len(self.copied)} tensors ({len(self.inflated)} inflated over time), "
            f"initialised {len(self.initialised)}, ignored {len(self.ignored)} image keys"
        )


def _timm_to_released(sd: StateDict) -> StateDict:
    """timm's FocalNet names -> the released FocalNet names (inverse of timm's checkpoint_filter_fn)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("stem.", "patch_embed.", 1) if k.startswith("stem.") else k
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        k = re.sub(r"ls([12])\.gamma", r"gamma_\1", k)
        k = re.sub(r"norm([12])_post", r"norm\1", k)
        k = k.replace("modulation.norm.", "modulation.ln.")
        k = k.replace("head.fc.", "head.")
        if re.search(r"modulation\.(f|proj)\.weight$", k) and v.ndim == 4:
            v = v.flatten(1)  # 1x1 conv -> linear
        out[k] = v
    return out


def _image_key_for(video_key: str, design: str) -> str | None:
    """The released image-FocalNet key that feeds `video_key`, or None if it has none."""
    if video_key.startswith("head.") or "temporal" in video_key:
        return None  # new classes; temporal branches and encoders start fresh
    if design == "sequential":
        if ".modulation.temporal." in video_key:
            return None
        return video_key.replace(".modulation.spatial.", ".modulation.")
    return video_key


def _inflate(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Fit an image tensor to a video parameter: equal shape, 1x1 conv <-> linear, or a 2D kernel
    repeated over time and divided by its length (I3D inflation: a static clip gives the image output)."""
    if image.shape == target.shape:
        return image
    if image.numel() == target.numel():
        return image.reshape(target.shape)
    if (image.ndim == 4 and target.ndim == 5
            and target.shape[:2] == image.shape[:2] and target.shape[3:] == image.shape[2:]):
        t = target.shape[2]
        return image.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
    return None


def load_image_weights(model: nn.Module, source: StateDict | str | PathLike) -> InflationReport:
    """Initialise a video model from ImageNet FocalNet weights (released or timm layout).

    Spatial weights are copied, tubelet/3D kernels inflated over time, the temporal branch and the
    classifier keep their fresh initialisation. Returns what was copied and what was initialised.
    """
    sd = read_state_dict(source)
    if "stem.proj.weight" in sd:
        sd = _timm_to_released(sd)
    if "patch_embed.proj.weight" not in sd:
        raise WeightsError("not an image FocalNet checkpoint: no patch_embed.proj.weight / stem.proj.weight")
    design = getattr(model, "design", "parallel")
    model_sd = model.state_dict()
    report = InflationReport()
    new_sd = {}
    used = set()
    for key, target in model_sd.items():
        image_key = _image_key_for(key, design)
        if image_key is None or image_key not in sd:
            report.initialised.append(key)
            continue
        value = _inflate(sd[image_key], target)
        if value is None:
            raise WeightsError(
                f"image weights do not fit the video model: {image_key!r} {tuple(sd[image_key].shape)} "
                f"vs {key!r} {tuple(target.shape)}"
            )
        if value.ndim == 5 and sd[image_key].ndim == 4:
            report.inflated.append(key)
        new_sd[key] = value.to(target.dtype)
        report.copied.append(key)
        used.add(image_key)
    report.ignored = [k for k in sd if k not in used]
    unexpected_ignored = [k for k in report.ignored if not k.startswith("head.")]
    if unexpected_ignored:
        raise WeightsError(
            f"image checkpoint does not fit the video model: {unexpected_ignored[0]!r} has no place in it "
            f"({len(unexpected_ignored)} such keys; different depths or focal levels?)"
        )
    model.load_state_dict(new_sd, strict=False)
    return report
