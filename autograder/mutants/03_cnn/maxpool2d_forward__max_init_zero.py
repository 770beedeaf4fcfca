def maxpool2d_forward(x, kernel=2, stride=2):
    """Max pooling over kernel x kernel windows taken every `stride` pixels, without padding."""
    N, C, H, W = x.shape
    H_out, W_out = (H - kernel) // stride + 1, (W - kernel) // stride + 1
    out = torch.zeros(N, C, H_out, W_out, dtype=x.dtype)  # BUG: the running maximum starts at 0, not -inf
    for r in range(kernel):
        for c in range(kernel):
            window_entry = x[:, :, r:r + (H_out - 1) * stride + 1:stride, c:c + (W_out - 1) * stride + 1:stride]
            out = torch.maximum(out, window_entry)
    return out
