"""The Textual app: setup screen, live dashboard, checkpoint panels and live tweaks."""
