"""gifsent models: encoders, heads, the fused scorer and the checkpoint format (torch)."""
