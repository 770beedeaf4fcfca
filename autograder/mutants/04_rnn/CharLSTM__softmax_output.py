class CharLSTM(nn.Module):
    """Character-level language model: embedding -> LSTM -> linear read-out.

    Attributes (the tests rely on these names):
        self.embedding: nn.Embedding(vocab_size, emb_dim)
        self.lstm:      nn.LSTM(emb_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head:      nn.Linear(hidden_dim, vocab_size)
    """

    def __init__(self, vocab_size, emb_dim=32, hidden_dim=128, num_layers=1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, vocab_size)

    def forward(self, idx, state=None):
        """idx: (N, T) int64 token indices.
        state: None (the LSTM starts from zeros) or the (h, c) pair returned by an earlier call,
               each of shape (num_layers, N, hidden_dim).
        Returns (logits, state): logits (N, T, vocab_size) are the UNNORMALISED scores (no softmax)
        for the next token at every position; state is the LSTM's new (h, c) pair.
        """
        out, state = self.lstm(self.embedding(idx), state)
        return torch.softmax(self.head(out), dim=-1), state
