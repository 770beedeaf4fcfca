# Mutant of `relu_backward`: masks on the sign of dout instead of x.
def relu_backward(dout, cache):
    """Backward pass of the ReLU.

    Args:
        dout: upstream gradient, float64 array of any shape.
        cache: the input x of relu_forward, same shape as dout.

    Returns:
        dx: float64 array of the same shape: dout where x > 0, and 0 where x <= 0
            (at exactly x = 0 we use the subgradient 0, as PyTorch does).
    """
    x = cache
    dx = dout * (dout > 0)
    return dx
