"""The training engine: no terminal code here (no textual, no rich)."""
