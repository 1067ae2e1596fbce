"""End-to-end experiments: stages, presets, figures and reports behind apps/reproduce.py."""

from icrl.apps._cli import main

__all__ = ["main"]
