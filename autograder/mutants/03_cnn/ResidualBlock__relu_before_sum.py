class ResidualBlock(nn.Module):
    """The basic residual block of ResNet: out = ReLU(F(x) + skip(x))."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_channels))
        else:
            self.skip = nn.Identity()

    def forward(self, x):
        residual = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return residual + self.skip(x)  # BUG: the ReLU is applied to F(x) before the sum instead of after it
