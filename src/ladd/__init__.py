"""ladd: label-centric dataset distillation (LADD, soft labels, decoupled distillation).

The Python API is `ladd.api` (`from ladd import api`): the command line's stages as functions."""

from ladd.core.allocator import keep_large_blocks

__version__ = "0.1.0"
keep_large_blocks()  # process-wide: training steps reuse their activation memory (see ladd.core.allocator)
