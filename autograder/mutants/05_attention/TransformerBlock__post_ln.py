class TransformerBlock(nn.Module):
    """A pre-LayerNorm transformer block: x + MHA(LN1(x)), then x + MLP(LN2(x)).

    Args:
        d_model: width of the token vectors.
        n_heads: attention heads (d_model divisible by n_heads).
        d_ff: hidden width of the MLP.
        dropout: dropout probability on each sub-layer's output, before it is added to the
            residual stream (0.0 = no dropout).

    Attributes (the tests use these names):
        ln1, ln2: nn.LayerNorm(d_model) (default eps), before attention and before the MLP.
        attn: MultiHeadAttention(d_model, n_heads) (your class above, created by that name).
        mlp: nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model)).
        dropout: nn.Dropout(dropout).
    """

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        """x: (N, T, d_model); mask: None or a bool mask as MultiHeadAttention takes it, passed on
        to self-attention as self.attn(..., mask=mask). Returns (N, T, d_model)."""
        x = self.ln1(x + self.dropout(self.attn(x, mask=mask)))
        return self.ln2(x + self.dropout(self.mlp(x)))
