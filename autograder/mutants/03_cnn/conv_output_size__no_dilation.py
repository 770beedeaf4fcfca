def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Length of a convolution's (or pooling's) output along one spatial dimension."""
    span = kernel  # BUG: ignores the dilation, a dilated kernel spans dilation * (kernel - 1) + 1 pixels
    if size + 2 * padding < span:
        raise ValueError("the kernel does not fit")
    return (size + 2 * padding - span) // stride + 1
