class SmallCNN(nn.Module):
    """A small residual CNN for 1x28x28 images."""

    def __init__(self, num_classes=10):
        super().__init__()
        # BUG: channels doubled everywhere: about 290k parameters, far over the 100k limit
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.blocks = nn.Sequential(ResidualBlock(32, 64, stride=2), ResidualBlock(64, 128, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))
