class TinyTransformer(nn.Module):
    """A small transformer over token ids: embedding (+ positions) -> blocks -> LayerNorm -> head.

    Args:
        vocab_size: number of token ids (inputs and output classes).
        d_model, n_heads: width and heads of every block.
        n_layers: number of TransformerBlocks (0 is allowed: embedding -> ln_f -> head).
        max_len: longest sequence the model accepts (T <= max_len).
        d_ff: MLP width of the blocks; None means 4 * d_model.
        dropout: dropout of the blocks.
        use_positions: add sinusoidal_positions(T, d_model) to the token embeddings (False makes
            the model permutation equivariant).
        causal: combine causal_mask(T) with the mask given to forward (mask & causal), so that
            position t only sees positions <= t.

    Attributes (the tests use these names):
        tok_emb: nn.Embedding(vocab_size, d_model).
        blocks: nn.ModuleList of n_layers TransformerBlock(d_model, n_heads, d_ff, dropout)
            (your class above, created by that name).
        ln_f: nn.LayerNorm(d_model).
        head: nn.Linear(d_model, vocab_size).
        use_positions, causal: the flags above.
    """

    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_len, d_ff=None, dropout=0.0,
                 use_positions=True, causal=False):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.max_len, self.use_positions, self.causal = max_len, use_positions, causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx, mask=None):
        """idx: int64 tensor (N, T) of token ids, T <= max_len. mask: None or a bool mask as
        MultiHeadAttention takes it ((T, T), (N, T, T) or (N, 1, T); True = may attend), passed to
        every block as block(x, mask=mask) (combined with the causal mask when causal=True).

        Returns logits (N, T, vocab_size):
            x = tok_emb(idx) [+ sinusoidal_positions(T, d_model)]; x = block(x, mask) for each
            block; logits = head(ln_f(x)).
        """
        n, t = idx.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        x = self.tok_emb(idx)
        if self.causal:
            causal = causal_mask(t, device=idx.device)
            mask = causal if mask is None else mask & causal
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.head(self.ln_f(x))
