"""Pick the compute device and make runs repeatable."""
import os
import random

import numpy as np
import torch


def _device_reason():
    override = os.environ.get("COURSE_DEVICE", "").strip()
    if override:
        device = torch.device(override)  # raises a clear error on a malformed name
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"COURSE_DEVICE={override!r} but CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"COURSE_DEVICE={override!r} but MPS is not available on this machine")
        return device, f"COURSE_DEVICE={override}"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"CUDA is available ({torch.cuda.get_device_name(0)})"
    if torch.backends.mps.is_available():
        return torch.device("mps"), "Apple MPS is available"
    return torch.device("cpu"), "no CUDA or MPS device found"


def get_device(verbose=True):
    """Return cuda > mps > cpu; the environment variable COURSE_DEVICE overrides the choice."""
    device, reason = _device_reason()
    if verbose:
        print(f"Using device: {device} ({reason})")
    return device


def seed_everything(seed=0):
    """Seed Python, NumPy and PyTorch (all devices) so a notebook gives the same numbers each run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed
