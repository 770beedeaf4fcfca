def freeze_backbone(model):
    """Freeze everything except the classifier head, for transfer learning."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters())  # BUG: counts every parameter, not the trainable ones
