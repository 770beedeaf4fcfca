def sample(model, prefix, max_len, temperature=1.0, generator=None):
    """Generate one name, one character at a time.

    model:       called as model(idx, state) -> (logits, state), like CharLSTM; idx is a (1, T) int64
                 tensor on the CPU and logits has shape (1, T, VOCAB_SIZE)
    prefix:      str of letters a-z (may be empty), the beginning of the name
    max_len:     the largest number of NEW characters to generate (the prefix does not count)
    temperature: float >= 0; the logits are divided by it. temperature == 0 means greedy decoding
                 (argmax, no random draw)
    generator:   a torch.Generator for the draws (None: PyTorch's global generator)

    Steps, under torch.no_grad():
    1. Feed the indices of [START] + prefix in ONE call, with state=None.
    2. Take the logits at the LAST position. If temperature == 0, the next index is their argmax;
       otherwise probs = softmax(logits / temperature) and the next index is
       torch.multinomial(probs, num_samples=1, generator=generator) (one draw per new character).
    3. If that index is END, stop. Otherwise append its character, feed that index alone (shape
       (1, 1)) together with the state returned by the previous call, and go back to step 2.
    Stop as well once max_len new characters have been appended (even if END was not drawn).

    Returns: prefix + the new characters, a str (START and END never appear in it).
    """
    chars = []
    with torch.no_grad():
        idx = torch.tensor([encode(prefix)[:-1]], dtype=torch.long)
        logits, state = model(idx, None)
        while len(chars) < max_len:
            last = logits[0, -1]
            if temperature == 0:
                nxt = int(torch.argmax(last))
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, num_samples=1))
            if nxt == END:
                break
            chars.append(ITOS[nxt])
            logits, state = model(torch.tensor([[nxt]], dtype=torch.long), state)
    return prefix + "".join(chars)
