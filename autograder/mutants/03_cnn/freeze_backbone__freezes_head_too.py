def freeze_backbone(model):
    """Freeze everything except the classifier head, for transfer learning."""
    for p in model.parameters():  # BUG: the head is frozen along with the backbone
        p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
