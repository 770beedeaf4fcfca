def freeze_backbone(model):
    """Freeze everything except the classifier head, for transfer learning."""
    for p in model.parameters():
        p.requires_grad_(False)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]  # BUG: guesses the head instead of model.head
    for p in head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
