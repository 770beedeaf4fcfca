# Mutant of `numerical_gradient`: forward difference (f(x+h) - f(x)) / h.
def numerical_gradient(f, x, h=1e-5):
    """Central-difference estimate of the gradient of a scalar function f at x.

    Args:
        f: a function mapping the array x to a scalar (Python float or 0-d array).
        x: float64 array of any shape. Perturb it in place one entry at a time, and leave it
           holding exactly the values it had before the call.
        h: the step size.

    Returns:
        grad: float64 array of x's shape, grad[i] ~ (f(x + h e_i) - f(x - h e_i)) / (2h).
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        try:
            x[index] = old + h
            f_plus = float(f(x))
            x[index] = old
            f_minus = float(f(x))
        finally:
            x[index] = old  # put the entry back even if f raised
        grad[index] = (f_plus - f_minus) / h
    return grad
