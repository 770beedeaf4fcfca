"""Gradient checks: relative error, numerical gradients, and PyTorch autograd as the answer key."""
import numpy as np
import torch


def rel_error(x, y, eps=1e-8):
    """Largest relative error max |x - y| / max(|x| + |y|, eps), the number every check quotes.

    For float64 gradients, below 1e-7 means correct; 1e-7..1e-4 asks for a second look (a kink such
    as ReLU at 0); above 1e-4 means a bug.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(eps, np.abs(x) + np.abs(y)))) if x.size else 0.0


def eval_numerical_gradient(f, x, df=None, h=1e-5):
    """Central-difference gradient of sum(f(x) * df) with respect to the numpy array x.

    f maps x to a scalar or an array; df is the upstream gradient (ones when omitted). x is changed
    in place one entry at a time and always restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        try:
            x[i] = old + h
            plus = np.asarray(f(x), dtype=np.float64)
            x[i] = old - h
            minus = np.asarray(f(x), dtype=np.float64)
        finally:
            x[i] = old
        weights = np.ones_like(plus) if df is None else df
        grad[i] = np.sum((plus - minus) * weights) / (2 * h)
    return grad


def compare_to_autograd(name, ours, reference, atol=1e-8, rtol=1e-5):
    """Compare a hand-computed gradient with PyTorch's; print and return exact/allclose/max diff."""
    ours = torch.as_tensor(np.asarray(ours), dtype=torch.float64)
    reference = torch.as_tensor(reference.detach().cpu().numpy() if torch.is_tensor(reference)
                                else np.asarray(reference), dtype=torch.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"{name}: shape {tuple(ours.shape)} differs from the reference {tuple(reference.shape)}")
    report = {
        "name": name,
        "exact": bool(torch.equal(ours, reference)),
        "allclose": bool(torch.allclose(ours, reference, atol=atol, rtol=rtol)),
        "max_diff": float((ours - reference).abs().max()) if ours.numel() else 0.0,
    }
    print(f"{name:<12} exact: {report['exact']!s:<5}  allclose: {report['allclose']!s:<5}  "
          f"max diff: {report['max_diff']:.2e}")
    return report
