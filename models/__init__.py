"""gifsent models: encoders, heads, the fused scorer and the checkpoint format (torch)."""

from gifsent_models.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from gifsent_models.encoders.base import Encoder, WeightsFormatError, WeightsUnavailableError
from gifsent_models.heads import (
    HeadConfigError,
    MaxPoolConfig,
    RNNConfig,
    create_head,
    head_config,
)
from gifsent_models.registry import (
    UnknownEncoderError,
    create_encoder,
    list_encoders,
    register_encoder,
)
from gifsent_models.scorer import GifScorer

__all__ = [
    "CheckpointError",
    "Encoder",
    "GifScorer",
    "HeadConfigError",
    "LoadedCheckpoint",
    "MaxPoolConfig",
    "RNNConfig",
    "UnknownEncoderError",
    "WeightsFormatError",
    "WeightsUnavailableError",
    "create_encoder",
    "create_head",
    "head_config",
    "list_encoders",
    "load_checkpoint",
    "register_encoder",
    "save_checkpoint",
]
