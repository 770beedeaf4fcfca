def rnn_forward(x, h0, Wx, Wh, b):
    """Run a vanilla tanh RNN over whole sequences.

        h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b),  t = 1..T,  starting from h_0 = h0

    Inputs (NumPy float64):
        x:  (N, T, D)  N sequences of T input vectors
        h0: (N, H)     initial hidden state
        Wx: (D, H)     input-to-hidden weights
        Wh: (H, H)     hidden-to-hidden weights
        b:  (H,)       bias
    Returns:
        h:     (N, T, H) float64; h[:, t] is the state after step t+1 (h0 itself is NOT included)
        cache: the tuple (x, h0, Wx, Wh, b, h), in exactly this order (rnn_backward reads it)
    """
    N, T, _ = x.shape
    h = np.empty((N, T, Wh.shape[0]), dtype=np.float64)
    prev = h0
    for t in range(T):
        prev = np.maximum(0.0, x[:, t] @ Wx + prev @ Wh + b)
        h[:, t] = prev
    cache = (x, h0, Wx, Wh, b, h)
    return h, cache
