"""Sequence backbones for in-context RL: Mamba and a causal transformer, one interface."""

__all__: list[str] = []
