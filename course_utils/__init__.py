"""Shared helpers for the course notebooks: device, seeding, profiles, training, checks, data, plots."""
from .device import get_device, seed_everything
from .profile import PROFILE, profile_value
from .training import fit, evaluate, accuracy, choose_amp
from .gradcheck import rel_error, eval_numerical_gradient, compare_to_autograd
from .plots import plot_history, plot_decision_boundary

__all__ = [
    "get_device", "seed_everything", "PROFILE", "profile_value",
    "fit", "evaluate", "accuracy", "choose_amp",
    "rel_error", "eval_numerical_gradient", "compare_to_autograd",
    "plot_history", "plot_decision_boundary",
]
