"""Meta-task MuJoCo environments whose task is hidden from the observation."""

__all__ = ["register_envs"]


def register_envs() -> None:
    """Register the icrl/* environment ids with Gymnasium (filled in by the metaenvs issue)."""
