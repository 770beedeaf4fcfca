# Mutant of `linear_forward`: forgets the bias.
def linear_forward(x, W, b):
    """Forward pass of a fully connected (affine) layer.

    Args:
        x: inputs, float64 array of shape (N, D), one example per row.
        W: weights, float64 array of shape (D, M).
        b: biases, float64 array of shape (M,).

    Returns:
        out: float64 array of shape (N, M), out = x W + b (b added to every row).
        cache: the tuple (x, W, b), everything linear_backward needs.
    """
    out = x @ W
    cache = (x, W, b)
    return out, cache
