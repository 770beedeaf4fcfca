# Mutant of `relu_forward`: caches the output instead of x.
def relu_forward(x):
    """Forward pass of the ReLU, elementwise max(0, x).

    Args:
        x: float64 array of any shape. It must not be modified.

    Returns:
        out: float64 array of the same shape as x.
        cache: x itself (relu_backward needs to know where x > 0).
    """
    out = np.maximum(x, 0.0)
    cache = out
    return out, cache
