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


def read_state_dict(source: StateDict | str | PathLike) -> StateDict:
    """A state dict from a file (`{"model": sd}`, `{"state_dict": sd}` or a bare sd) or a dict."""
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"{path}: no such checkpoint file")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
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


def _first_mismatch(model_sd: StateDict, sd: StateDict) -> str | None:
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
    problem = _first_mismatch(model.state_dict(), sd)
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
