def clip_grad_norm(grads, max_norm):
    """Rescale a list of gradients so that their GLOBAL L2 norm is at most max_norm.

    total_norm = sqrt(sum over every array g of sum(g ** 2))   (one norm over all entries of all arrays)
    If total_norm > max_norm, every array is multiplied by max_norm / (total_norm + 1e-6), as in
    torch.nn.utils.clip_grad_norm_; otherwise the values are returned unchanged.

    Inputs:
        grads:    a list of NumPy float64 arrays of any shapes
        max_norm: a positive float
    Returns:
        clipped:    a list of NEW float64 arrays, same order and shapes (the inputs are left untouched)
        total_norm: float, the global norm BEFORE clipping
    """
    total_norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in grads)))
    scale = max_norm / (total_norm + 1e-6) if total_norm > max_norm else 1.0
    for g in grads:
        g *= scale
    clipped = grads
    return clipped, total_norm
