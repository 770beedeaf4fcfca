class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: width of the inputs and of the output; must be divisible by n_heads.
        n_heads: number of heads; each works in d_head = d_model // n_heads dimensions.

    Attributes (the tests use these names):
        q_proj, k_proj, v_proj, out_proj: nn.Linear(d_model, d_model), each with a bias.
            Head h uses output features h*d_head:(h+1)*d_head of q_proj, k_proj and v_proj (the
            layout of torch.nn.MultiheadAttention); out_proj mixes the concatenated heads.
        n_heads, d_head: ints.
        last_weights: the attention weights of the latest forward call, (N, n_heads, Tq, Tk),
            stored detached (weights.detach(): it is only read, e.g. by the attention explorer);
            None before the first call.
    """

    def __init__(self, d_model, n_heads):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.last_weights = None

    def forward(self, x, context=None, mask=None):
        """Attend from x to context (or to x itself).

        Args:
            x: (N, Tq, d_model), the sequence the queries come from.
            context: (N, Tk, d_model), the sequence keys and values come from (cross-attention);
                None means self-attention (context = x, Tk = Tq).
            mask: None or a bool tensor, True = may attend, the same for every head, of shape
                (Tq, Tk) (shared by the batch, e.g. causal_mask(T)), (N, Tq, Tk) (per example) or
                (N, 1, Tk) (a key-padding mask). Every query row must allow at least one key.

        Returns:
            (N, Tq, d_model). Also stores the weights (N, n_heads, Tq, Tk) in self.last_weights.
        Use scaled_dot_product_attention (your function above) for all heads at once.
        """
        context = x if context is None else context
        n, t_q, d_model = x.shape
        t_k = context.shape[1]

        def split(t, length):  # (N, T, d_model) -> (N, heads, T, d_head)
            return t.reshape(n, self.n_heads, length, self.d_head)

        q = split(self.q_proj(x), t_q)
        k = split(self.k_proj(context), t_k)
        v = split(self.v_proj(context), t_k)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (N, 1, Tq or 1, Tk): the same for every head
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
        self.last_weights = weights.detach()
        out = out.reshape(n, t_q, d_model)
        return self.out_proj(out)
