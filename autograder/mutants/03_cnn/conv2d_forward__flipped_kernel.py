def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D cross-correlation, as torch.nn.functional.conv2d computes it (no kernel flip)."""
    N, C, H, W = x.shape
    n_filters, _, KH, KW = w.shape
    H_out = (H + 2 * padding - KH) // stride + 1
    W_out = (W + 2 * padding - KW) // stride + 1
    w = w.flip(2, 3)  # BUG: a textbook convolution (flipped kernel), not the correlation conv2d computes
    cols = F.unfold(x, (KH, KW), padding=padding, stride=stride)
    out = w.reshape(n_filters, -1) @ cols + b.reshape(1, n_filters, 1)
    return out.reshape(N, n_filters, H_out, W_out)
