def rnn_backward(dh, cache):
    """Backpropagation through time for rnn_forward.

    Inputs:
        dh:    (N, T, H) float64, the upstream gradient dL/dh[:, t] on EVERY hidden state (the
               loss may read each step; the gradient arriving from later steps is NOT included)
        cache: the tuple (x, h0, Wx, Wh, b, h) returned by rnn_forward, where x is (N, T, D),
               h0 (N, H), Wx (D, H), Wh (H, H), b (H,) and h (N, T, H) holds the states after
               each step (h0 not included)
    Returns:
        dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,): float64 gradients of the loss
    """
    x, h0, Wx, Wh, b, h = cache
    T = x.shape[1]
    dx = np.zeros(x.shape, dtype=np.float64)
    dWx = np.zeros(Wx.shape, dtype=np.float64)
    dWh = np.zeros(Wh.shape, dtype=np.float64)
    db = np.zeros(b.shape, dtype=np.float64)
    dnext = np.zeros(h0.shape, dtype=np.float64)    # gradient arriving from step t + 1
    for t in reversed(range(T)):
        da = dh[:, t] + dnext
        prev = h[:, t - 1] if t > 0 else h0
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
        dnext = da @ Wh.T
    return dx, dnext, dWx, dWh, db
