"""Video-FocalNet models: pure PyTorch + timm (never imports ray or mlflow)."""

from vfn.config.names import DESIGNS

from .compiling import COMPILE_MODES, Compiled, compile_ahead
from .video_focalnet import TEMPORAL_INITS, VideoFocalNet, VideoFocalNetBlock
from .weights import (
    InflationReport,
    TransferReport,
    WeightsError,
    load_image_weights,
    load_released_weights,
    load_video_weights,
    read_state_dict,
    save_released_weights,
)
from .zoo import RELEASED, ZOO, ReleasedCheckpoint, create_model

__all__ = [
    "COMPILE_MODES",
    "Compiled",
    "compile_ahead",
    "DESIGNS",
    "TEMPORAL_INITS",
    "ZOO",
    "RELEASED",
    "ReleasedCheckpoint",
    "WeightsError",
    "InflationReport",
    "TransferReport",
    "VideoFocalNet",
    "VideoFocalNetBlock",
    "create_model",
    "load_image_weights",
    "load_released_weights",
    "load_video_weights",
    "read_state_dict",
    "save_released_weights",
]
