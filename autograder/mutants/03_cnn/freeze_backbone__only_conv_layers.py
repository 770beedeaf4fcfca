def freeze_backbone(model):
    """Freeze everything except the classifier head, for transfer learning."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # BUG: BatchNorm (and other) parameters stay trainable
            for p in module.parameters():
                p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
