"""`python -m course_utils`: what this machine will run the course with."""
import importlib.metadata
import platform
import sys

from .data import DATASETS
from .device import _device_reason
from .profile import current_profile

PACKAGES = ["torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "scikit-learn", "mlxtend", "names",
            "jupyterlab", "nbgrader"]


def main():
    print(f"Python {platform.python_version()} on {platform.platform()}")
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "NOT INSTALLED"
        print(f"  {name:<13} {version}")
    device, reason = _device_reason()
    print(f"Device: {device} ({reason}); profile: {current_profile()}")
    failed = 0
    for name, load in DATASETS.items():
        try:
            print(f"  data ok    {name}: {load()}")
        except Exception as exc:  # report every dataset, then fail at the end
            failed += 1
            print(f"  data FAIL  {name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


sys.exit(main())
