"""Encoders: uint8 frames [B, S*T, H, W, 3] -> features [B, S, D].

The built-in encoders register themselves when `gifsent_models.registry` first needs them.
"""

from gifsent_models.encoders.base import Encoder, WeightsFormatError, WeightsUnavailableError

__all__ = ["Encoder", "WeightsFormatError", "WeightsUnavailableError"]
