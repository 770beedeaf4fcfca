def maxpool2d_backward(dout, x, kernel=2, stride=2):
    """Gradient of maxpool2d_forward with respect to its input."""
    N, C, H, W = x.shape
    H_out, W_out = dout.shape[2], dout.shape[3]
    # BUG: every position of the window gets the window's gradient, not only the arg-max
    routed = dout.unsqueeze(-1).expand(N, C, H_out, W_out, kernel * kernel)
    cols = routed.permute(0, 1, 4, 2, 3).reshape(N, C * kernel * kernel, H_out * W_out)
    return F.fold(cols, (H, W), kernel, stride=stride)
