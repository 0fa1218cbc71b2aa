"""Packages for the wheel: every package under tui_trainer/ (found, never listed by hand, so a new one cannot be
left out) and the top-level presets/ folder as tui_trainer.shipped_presets. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["tui_trainer", "tui_trainer.*"]), "tui_trainer.shipped_presets"])
