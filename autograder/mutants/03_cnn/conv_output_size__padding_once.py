def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Length of a convolution's (or pooling's) output along one spatial dimension."""
    span = dilation * (kernel - 1) + 1
    if size + padding < span:
        raise ValueError("the kernel does not fit")
    return (size + padding - span) // stride + 1  # BUG: padding counted on one side only
