# Mutant of `linear_backward`: dx = dout W, missing the transpose.
def linear_backward(dout, cache):
    """Backward pass of the affine layer out = x W + b.

    Args:
        dout: upstream gradient dL/dout, float64 array of shape (N, M).
        cache: the tuple (x, W, b) saved by linear_forward; x (N, D), W (D, M), b (M,).

    Returns:
        dx: dL/dx, shape (N, D).
        dW: dL/dW, shape (D, M).
        db: dL/db, shape (M,).
    """
    x, W, b = cache
    dx = dout @ W
    dW = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dW, db
