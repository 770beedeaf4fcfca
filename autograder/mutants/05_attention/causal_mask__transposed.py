def causal_mask(T, device=None):
    """The causal (look-back-only) attention mask.

    Args:
        T: sequence length (int >= 1).
        device: where to create the mask (None = the default device, the CPU).

    Returns:
        torch.bool tensor (T, T), mask[i, j] = True exactly when j <= i (query position i may
        attend to key position j: itself and the past, never the future).
    """
    return torch.triu(torch.ones(T, T, dtype=torch.bool, device=device))
