"""ladd: label-centric dataset distillation (LADD, soft labels, decoupled distillation)."""

__version__ = "0.1.0"
