def scaled_dot_product_attention(q, k, v, mask=None):
    """Scaled dot-product attention, softmax(q k^T / sqrt(d)) v, over any leading batch dimensions.

    Args:
        q: queries, float tensor (..., Tq, d).
        k: keys, float tensor (..., Tk, d), same dtype as q.
        v: values, float tensor (..., Tk, dv).
        mask: None, or a bool tensor broadcastable to (..., Tq, Tk): True where query i may attend
            to key j, False where it may not (that weight must come out exactly 0).

    Returns:
        (out, weights):
        out: (..., Tq, dv), for each query the weighted average of the values.
        weights: (..., Tq, Tk), the attention weights; every row sums to 1 over its allowed keys.

    The scale is 1 / sqrt(d) with d = q.shape[-1]; the softmax runs over the keys (last axis).
    Contract on masks: every query row must allow at least one key. A row that allows no key is
    outside the contract (filling scores with -inf makes it NaN, PyTorch's
    F.scaled_dot_product_attention returns zeros there); the tests never use one. A row that
    allows exactly one key must work (weight 1 on that key).
    Write it with matmul and softmax; do not call F.scaled_dot_product_attention.
    """
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2)
    return weights @ v, weights
