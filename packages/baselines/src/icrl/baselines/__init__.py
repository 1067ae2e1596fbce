"""Meta-RL baselines evaluated like AD: MACAW (offline) and MQL (online)."""

__all__: list[str] = []
