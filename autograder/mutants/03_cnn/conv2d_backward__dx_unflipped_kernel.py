def conv2d_backward(dout, x, w, stride=1, padding=0):
    """Gradients of conv2d_forward, computed by hand (no autograd)."""
    N, C, H, W = x.shape
    n_filters, _, KH, KW = w.shape
    _, _, H_out, W_out = dout.shape
    db = dout.sum(dim=(0, 2, 3))
    # spread dout back onto the stride-1 grid
    dilated = dout.new_zeros(N, n_filters, (H_out - 1) * stride + 1, (W_out - 1) * stride + 1)
    dilated[:, :, ::stride, ::stride] = dout
    # dx of the padded input: a full convolution of dout with w, i.e. a correlation with the rotated kernel
    full = F.pad(dilated, (KW - 1, KW - 1, KH - 1, KH - 1))
    dx_pad = conv2d_forward(full, w.transpose(0, 1), torch.zeros(C, dtype=x.dtype))  # BUG: kernel not rotated by 180
    Hp, Wp = H + 2 * padding, W + 2 * padding
    dx_pad = F.pad(dx_pad, (0, Wp - dx_pad.shape[-1], 0, Hp - dx_pad.shape[-2]))  # rows no window covered
    dx = dx_pad[:, :, padding:padding + H, padding:padding + W]
    # dw: a correlation of the padded input with the spread-out dout, batch as the channel axis
    x_pad = F.pad(x, (padding, padding, padding, padding))
    dw = conv2d_forward(x_pad.transpose(0, 1), dilated.transpose(0, 1), torch.zeros(n_filters, dtype=x.dtype))
    dw = dw.transpose(0, 1)[:, :, :KH, :KW]
    return dx, dw, db
