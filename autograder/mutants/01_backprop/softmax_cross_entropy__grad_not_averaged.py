# Mutant of `softmax_cross_entropy`: mean loss but gradient not divided by N.
def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy loss and its gradient with respect to the logits.

    Args:
        logits: float64 array of shape (N, C), unnormalised class scores. Must stay finite and
            exact for entries as large as 1e4 (subtract each row's max before exponentiating),
            and must not be modified.
        y: integer array of shape (N,), the correct class of each row, 0 <= y[n] < C.

    Returns:
        loss: a Python float (or 0-d float64 array), the mean over the N rows of -log p[n, y[n]].
        dlogits: float64 array of shape (N, C), dloss/dlogits.
    """
    N = logits.shape[0]
    rows = np.arange(N)
    shifted = logits - logits.max(axis=1, keepdims=True)           # every row's max becomes 0
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # log-sum-exp of shifted row
    log_probs = shifted - log_norm
    loss = -log_probs[rows, y].mean()
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1.0
    return float(loss), dlogits
