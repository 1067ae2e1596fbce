"""Algorithm Distillation: train a sequence model on learning histories, evaluate it in context."""

__all__: list[str] = []
