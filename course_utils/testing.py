"""Assertions for the notebooks' test cells, with messages that say what is wrong.

Each check names the quantity, then reports the first problem found: type, shape, dtype,
non-finite values, or the largest difference and where it is.
"""
import numpy as np
import torch


def _as_numpy(value, name):
    # Exact types only: a subclass could redefine comparison, conversion or __eq__.
    kind = type(value)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(value)))
    if kind is np.ndarray or kind in (float, int) or (kind.__module__ == "numpy" and isinstance(value, np.generic)):
        return np.array(value)
    raise AssertionError(f"{name}: expected an array or tensor, got {kind.__name__}")


def check_shape(value, shape, name="output"):
    got = _as_numpy(value, name).shape
    assert got == tuple(shape), f"{name}: expected shape {tuple(shape)}, got {got}"


def check_close(actual, expected, name="output", rtol=1e-6, atol=1e-8, check_dtype=True):
    """Assert that `actual` matches `expected` (arrays, tensors or numbers) with a teaching message."""
    kind_expected = "tensor" if torch.is_tensor(expected) else "array"
    if torch.is_tensor(expected) and not torch.is_tensor(actual):
        raise AssertionError(f"{name}: expected a torch tensor, got {type(actual).__name__}")
    if isinstance(expected, np.ndarray) and torch.is_tensor(actual):
        raise AssertionError(f"{name}: expected a NumPy array, got a torch tensor")
    a, e = _as_numpy(actual, name), _as_numpy(expected, name)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: expected shape {e.shape}, got {a.shape}")
    if check_dtype and np.issubdtype(e.dtype, np.floating) and a.dtype != e.dtype:
        raise AssertionError(f"{name}: expected {kind_expected} dtype {e.dtype}, got {a.dtype}")
    if np.issubdtype(a.dtype, np.number) and not np.all(np.isfinite(a[np.isfinite(e)])):
        raise AssertionError(f"{name}: contains NaN or inf where finite values were expected")
    if a.size and not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        where = np.unravel_index(np.nanargmax(diff), diff.shape)
        raise AssertionError(f"{name}: values differ; largest difference {diff[where]:.3g} at index "
                             f"{tuple(int(i) for i in where)} (got {a[where]!r}, expected {e[where]!r})")


class replaced:
    """Temporarily bind names in a namespace, e.g. a test of a network swaps in reference layers so
    that a mistake in an earlier exercise does not cost points again here (inside `with student:`,
    since the student's network looks its layers up where it runs)::

        with student:
            with replaced(globals(), linear_forward=reference_linear_forward):
                scores = net.loss(X)
    """

    _missing = object()

    def __init__(self, namespace, **objects):
        self.namespace, self.objects, self.saved = namespace, objects, {}

    def __enter__(self):
        for name, obj in self.objects.items():
            self.saved[name] = self.namespace.get(name, self._missing)
            self.namespace[name] = obj
        return self

    def __exit__(self, *exc):
        for name, old in self.saved.items():
            if old is self._missing:
                self.namespace.pop(name, None)
            else:
                self.namespace[name] = old
        return False


class _Student:
    """`with student:` marks the lines of a test that run the student's code.

    In a notebook's kernel it does nothing: the lines run where they are. When the autograder
    grades, those lines run in the student's sandboxed process, with the test's values they use sent
    there, and the names they assign come back to the test as data (arrays, tensors, numbers,
    strings, lists, tuples, dicts); everything else the test does (reference values, assertions)
    runs in a separate process that never runs the student's code. So a block assigns what the test
    will check, and never holds an assertion or an expected value::

        x = np.array([1.0, -2.0])
        with student:
            out = relu(x)
        check_close(out, np.array([1.0, 0.0]), "relu(x)")
    """

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return "student"


student = _Student()
