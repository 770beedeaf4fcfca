def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D cross-correlation, as torch.nn.functional.conv2d computes it (no kernel flip)."""
    N, C, H, W = x.shape
    n_filters, _, KH, KW = w.shape
    x_pad = F.pad(x, (padding, padding))  # BUG: F.pad with two numbers pads only the last axis (width)
    H_out = (x_pad.shape[2] - KH) // stride + 1
    W_out = (x_pad.shape[3] - KW) // stride + 1
    cols = F.unfold(x_pad, (KH, KW), stride=stride)
    out = w.reshape(n_filters, -1) @ cols + b.reshape(1, n_filters, 1)
    return out.reshape(N, n_filters, H_out, W_out)
