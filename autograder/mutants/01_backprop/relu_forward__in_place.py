# Mutant of `relu_forward`: zeroes the negative entries of the caller's x.
def relu_forward(x):
    """Forward pass of the ReLU, elementwise max(0, x).

    Args:
        x: float64 array of any shape. It must not be modified.

    Returns:
        out: float64 array of the same shape as x.
        cache: x itself (relu_backward needs to know where x > 0).
    """
    x[x < 0] = 0.0
    out = x
    cache = x
    return out, cache
