def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D cross-correlation, as torch.nn.functional.conv2d computes it (no kernel flip)."""
    N, C, H, W = x.shape
    n_filters, _, KH, KW = w.shape
    H_out = (H + 2 * padding - KH) // stride + 1
    W_out = (W + 2 * padding - KW) // stride + 1
    cols = F.unfold(x, (KH, KW), padding=padding, stride=stride)
    out = (w.reshape(n_filters, -1) @ cols).reshape(N, n_filters, H_out, W_out)
    return out + b  # BUG: b (F,) broadcasts against the LAST axis (width), not the filter axis
