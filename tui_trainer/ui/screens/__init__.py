"""The app's screens and modal panels."""
