"""The stream state of the PyTensor Op: the step, an int64 scalar."""

__all__ = ["LAST_STEP", "next_step"]

# The state after a batch is step + 1, an int64: the last step it can draw.
LAST_STEP = 2 ** 63 - 1


def next_step(step):
    """``step`` as an int that a batch can be drawn from (its successor fits
    an int64); ValueError or OverflowError otherwise."""
    t = int(step)
    if t < 0:
        raise ValueError(f"the minibatch step must be >= 0, got {t}")
    if t >= LAST_STEP:
        raise OverflowError(f"the minibatch step is {t}, the largest an int64 state can "
                            "advance from: set the step variable to an earlier step")
    return t
