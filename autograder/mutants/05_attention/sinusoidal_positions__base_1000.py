def sinusoidal_positions(T, d):
    """Sinusoidal positional encodings (Vaswani et al., 2017).

    Args:
        T: number of positions t = 0, 1, ..., T-1.
        d: encoding width, an even number.

    Returns:
        float32 tensor (T, d) with pe[t, 2i] = sin(t * w_i) and pe[t, 2i+1] = cos(t * w_i),
        where w_i = 10000 ** (-2i / d) for i = 0 ... d/2 - 1 (wavelengths 2*pi ... ~10000*2*pi).
    """
    positions = torch.arange(T, dtype=torch.float64)[:, None]
    omega = 1000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions * omega                      # (T, ceil(d/2))
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d // 2])
    return pe.float()
