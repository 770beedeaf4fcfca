def lstm_cell(x, h, c, W, b):
    """One step of an LSTM, written with torch operations.

        z = cat([x, h], dim=1) @ W + b, split into four blocks of H columns, in this order:
            i (input gate), f (forget gate), o (output gate), g (candidate)
        i, f, o = sigmoid(...);  g = tanh(...)
        c_next = f * c + i * g
        h_next = o * tanh(c_next)

    Inputs (torch tensors of one floating dtype):
        x: (N, D), h: (N, H), c: (N, H), W: (D + H, 4H), b: (4H,)
    Returns:
        h_next (N, H), c_next (N, H): tensors of the inputs' dtype
    """
    H = h.shape[1]
    z = torch.cat([x, h], dim=1) @ W + b
    i = torch.sigmoid(z[:, :H])
    f = torch.sigmoid(z[:, H:2 * H])
    g = torch.tanh(z[:, 2 * H:3 * H])
    o = torch.sigmoid(z[:, 3 * H:])
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    return h_next, c_next
