"""Widgets of the dashboard, one concern each."""
