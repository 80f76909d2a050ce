"""The stream state of the PyTensor Op: the step, an int64 scalar, checked
by the core (``BatchSpec.check_graph_step``) in Python and, with the same
bound and messages, in the Op's C code."""
from mbcore import BatchSpec

__all__ = ["LAST_STEP", "next_step"]

# The state after a batch is step + 1, an int64: the last step it can draw.
LAST_STEP = BatchSpec.LAST_GRAPH_STEP
next_step = BatchSpec.check_graph_step
