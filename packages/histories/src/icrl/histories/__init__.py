"""Learning histories: Tianshou source RL recorded transition by transition, stored in HDF5."""

__all__: list[str] = []
