"""Speech recognition backends (Whisper through faster-whisper, or mlx-whisper on Apple Silicon)."""
