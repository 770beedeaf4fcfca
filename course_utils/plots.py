"""Plotting helpers shared by the notebooks."""
import numpy as np


def integer_ticks(ax, axis="x"):
    """Whole-number ticks only on one axis of `ax` (epochs, steps): no "epoch 1.5" with few epochs."""
    from matplotlib.ticker import MaxNLocator
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))
    return ax


def plot_history(history, keys=None, ax=None):
    """Learning curves from `fit`'s history: one panel for losses, one for other metrics."""
    import matplotlib.pyplot as plt
    keys = keys or [k for k in history if k not in ("epoch", "time")]
    losses = [k for k in keys if k.endswith("loss")]
    others = [k for k in keys if k not in losses]
    if ax is None:
        _, axes = plt.subplots(1, 1 + bool(others), figsize=(5 * (1 + bool(others)), 3.2), squeeze=False)
        axes = axes[0]
    else:
        axes = [ax, ax]
    epochs = history.get("epoch") or list(range(1, len(history[keys[0]]) + 1))
    for panel, group in zip(axes, [losses, others]):
        for key in group:
            panel.plot(epochs, history[key], marker=".", label=key)
        if group:
            panel.set_xlabel("epoch")
            integer_ticks(panel)
            panel.legend()
            panel.grid(alpha=0.3)
    return axes


def plot_decision_boundary(predict, X, y, ax=None, resolution=200, title=None):
    """Shade the class `predict` assigns to each point of the plane around X, then scatter X by label."""
    import matplotlib.pyplot as plt
    ax = ax or plt.gca()
    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    labels = np.asarray(predict(np.c_[grid_x.ravel(), grid_y.ravel()])).reshape(grid_x.shape)
    ax.contourf(grid_x, grid_y, labels, alpha=0.3, cmap="coolwarm")
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", edgecolors="k", s=15)
    if title:
        ax.set_title(title)
    return ax
