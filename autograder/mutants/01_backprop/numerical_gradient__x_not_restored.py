# Mutant of `numerical_gradient`: leaves every entry of x at old - h.
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
        if True:
            x[index] = old + h
            f_plus = float(f(x))
            x[index] = old - h
            f_minus = float(f(x))
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad
