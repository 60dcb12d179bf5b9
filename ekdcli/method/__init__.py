"""The paper's method on top of the engine: energy scores, partitions, the distillation objective, figures."""
