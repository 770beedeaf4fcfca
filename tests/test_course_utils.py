"""Unit tests of course_utils: device choice, profiles, the training loop, checks, data."""
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import course_utils
from course_utils import accuracy, choose_amp, evaluate, fit, get_device, profile_value, seed_everything
from course_utils.data import load_digits_split, load_names, make_2d_dataset, make_loader
from course_utils.gradcheck import compare_to_autograd, eval_numerical_gradient, rel_error
from course_utils.testing import check_close, check_shape, replaced


def test_device_defaults_to_cpu_here_and_says_why(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected
    assert "Using device" in capsys.readouterr().out


def test_device_override_is_honoured(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device(verbose=False) == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device(verbose=False)


def test_profile_value_follows_the_environment(monkeypatch):
    for name, expected in [("fast", 1), ("default", 10), ("full", 50)]:
        monkeypatch.setenv("COURSE_PROFILE", name)
        assert profile_value(fast=1, default=10, full=50) == expected
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert profile_value(fast=1, default=10) == 10
    monkeypatch.setenv("COURSE_PROFILE", "huge")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        profile_value(fast=1, default=2)


def test_seed_everything_repeats_numbers():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(2))
    seed_everything(3)
    b = (np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def _problem(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    y = ((X[:, 0] * X[:, 1]) > 0).long()  # XOR-like: needs the hidden layer
    return make_loader(X[:400], y[:400], batch_size=32, shuffle=True, seed=seed), make_loader(X[400:], y[400:], batch_size=64)


def _model():
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))


def test_fit_learns_a_small_problem():
    seed_everything(0)
    train, val = _problem()
    model = _model()
    before = evaluate(model, val, nn.functional.cross_entropy, {"acc": accuracy})
    history = fit(model, train, val, nn.functional.cross_entropy, torch.optim.Adam(model.parameters(), 1e-2),
                  epochs=15, metrics={"acc": accuracy}, progress=False)
    assert set(history) >= {"epoch", "train_loss", "val_loss", "val_acc", "time"}
    assert history["epoch"] == list(range(1, 16))
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_acc"][-1] > 0.9 > before["acc"]


def test_checkpoint_resume_reaches_the_same_state(tmp_path):
    def run(epochs, checkpoint=None):
        seed_everything(1)
        train, val = _problem(1)
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        history = fit(model, train, val, nn.functional.cross_entropy, opt, epochs=epochs, scheduler=sched,
                      checkpoint=checkpoint, progress=False)
        return model, history

    straight, h_straight = run(4)
    ckpt = tmp_path / "run.pt"
    run(2, ckpt)                      # a run stopped after 2 epochs
    resumed, h_resumed = run(4, ckpt)  # a new process would start over: same model, optimizer, scheduler
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    assert h_resumed["train_loss"] == h_straight["train_loss"]
    again, h_again = run(4, ckpt)     # finished: training is skipped, the weights are loaded
    assert h_again["epoch"] == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), again.state_dict().values()))


def test_early_stopping_restores_the_best_weights():
    seed_everything(0)
    train, val = _problem()
    model = _model()
    # a learning rate so large that the validation loss gets worse: stops early, keeps the best epoch
    history = fit(model, train, val, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=50.0),
                  epochs=30, patience=2, progress=False)
    assert len(history["epoch"]) < 30
    best = min(history["val_loss"])
    assert evaluate(model, val, nn.functional.cross_entropy)["loss"] == pytest.approx(best, rel=1e-5)


def test_an_early_stop_ends_the_progress_bar_complete(monkeypatch):
    """A notebook bar closed short of its total turns red, as if training failed: an intended early
    stop must leave it complete."""
    import tqdm as tqdm_module
    from course_utils import training

    closed = []

    class Recording(tqdm_module.tqdm):
        def close(self):
            closed.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(training, "tqdm", lambda **kw: Recording(**{**kw, "disable": False, "file": io.StringIO()}))
    seed_everything(0)
    train, val = _problem()
    model = _model()
    history = fit(model, train, val, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=50.0),
                  epochs=30, patience=2)
    assert len(history["epoch"]) < 30
    assert closed and closed[0][0] == closed[0][1] == len(history["epoch"]) * len(train)


def test_autocast_is_never_used_on_cpu(monkeypatch):
    model = _model()
    for amp in ("auto", True, "bf16", "fp16"):
        assert choose_amp(model, "cpu", 4096, amp) is None

    def forbidden(*args, **kwargs):
        raise AssertionError("autocast entered on the CPU")
    monkeypatch.setattr(torch, "autocast", forbidden)
    train, val = _problem()
    fit(model, train, val, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=1, amp=True, progress=False)


def test_amp_policy_on_cuda_is_by_work_size(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    small, big = nn.Linear(10, 10), nn.Linear(2000, 2000)  # 110 vs 4M parameters
    assert choose_amp(small, "cuda", 256, "auto") is None
    assert choose_amp(big, "cuda", 256, "auto") == torch.bfloat16
    assert choose_amp(small, "cuda", 256, "fp16") == torch.float16
    assert choose_amp(big, "cuda", 256, False) is None
    with pytest.raises(ValueError):
        choose_amp(big, "cuda", 256, "int8")


def test_grad_clip_bounds_the_update():
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    X, y = torch.full((8, 3), 100.0), torch.full((8, 1), 1e4)
    fit(model, make_loader(X, y, batch_size=8), None, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=1.0),
        epochs=1, grad_clip=1.0, progress=False)
    step = torch.cat([model.weight.flatten(), model.bias]).norm()
    assert step.item() == pytest.approx(1.0, rel=1e-4)


def test_rel_error_and_numerical_gradient():
    assert rel_error(np.ones(3), np.ones(3)) == 0
    assert rel_error([1.0], [1.1]) == pytest.approx(0.1 / 2.1)
    x = np.random.default_rng(0).normal(size=(3, 4))
    before = x.copy()
    grad = eval_numerical_gradient(lambda a: np.sum(a ** 3), x)
    assert rel_error(grad, 3 * x ** 2) < 1e-7
    assert np.array_equal(x, before)
    df = np.random.default_rng(1).normal(size=(3, 4))
    assert rel_error(eval_numerical_gradient(np.sin, x, df), np.cos(x) * df) < 1e-7


def test_compare_to_autograd_reports(capsys):
    t = torch.randn(4, dtype=torch.float64, requires_grad=True)
    (t ** 2).sum().backward()
    report = compare_to_autograd("dx", 2 * t.detach().numpy(), t.grad)
    assert report["allclose"] and report["max_diff"] < 1e-12
    assert "dx" in capsys.readouterr().out
    assert not compare_to_autograd("dx", np.zeros(4), t.grad)["allclose"]


def test_check_close_says_what_is_wrong():
    expected = np.arange(6.0).reshape(2, 3)
    check_close(expected.copy(), expected)
    cases = [
        (expected.T, "expected shape (2, 3), got (3, 2)"),
        (expected.astype(np.float32), "dtype float64, got float32"),
        (torch.tensor(expected), "expected a NumPy array"),
        (np.where(expected == 4, np.nan, expected), "NaN"),
        (expected + np.eye(2, 3) * 0.5, "largest difference 0.5 at index (0, 0)"),
        ("text", "expected an array or tensor"),
    ]
    for actual, message in cases:
        with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_close(actual, expected)
    with pytest.raises(AssertionError, match="shape"):
        check_shape(np.zeros(3), (3, 1), "h")


def test_replaced_restores_the_namespace():
    namespace = {"f": 1}
    with replaced(namespace, f=2, g=3):
        assert namespace == {"f": 2, "g": 3}
    assert namespace == {"f": 1}
    with pytest.raises(KeyError):
        with replaced(namespace, f=5):
            raise KeyError("boom")
    assert namespace == {"f": 1}


def test_datasets_load_offline():
    X_train, X_test, y_train, y_test = load_digits_split()
    assert X_train.shape[1] == 64 and len(X_train) + len(X_test) == 1797 and X_train.max() <= 1.0
    first = load_names("first")
    assert len(first) > 5000 and all(name.isalpha() and name.islower() for name in first[:100])
    for kind in ("moons", "circles", "spiral"):
        X, y = make_2d_dataset(kind, n=100)
        assert X.shape == (100, 2) and set(np.unique(y)) == {0, 1}


def test_environment_report_runs():
    out = subprocess.run([sys.executable, "-m", "course_utils"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "torch" in out.stdout and "Device: " in out.stdout and "data FAIL" not in out.stdout


def test_a_name_error_blames_the_exercise_that_left_the_name_undefined(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from course_utils.exercises import explain_unanswered

    shell = InteractiveShell.instance()
    try:
        explain_unanswered(shell)
        for name in ("first", "second"):
            shell.run_cell(f"def {name}():\n    {STUB.format(name)}\n")
        shell.run_cell("ready = 1\nvalue, other = first()")
        shell.run_cell("later = second()")
        shell.run_cell("chained = value + 1")                          # stopped by a NameError that value left
        shell.run_cell("from course_utils.exercises import needs\nneeds(second)\ndemo = 1")   # a demo waiting for second
        capsys.readouterr()
        for cell, exercise in [("print(value)", "first"), ("print(later)", "second"), ("print(chained)", "first"),
                               ("print(demo)", "second"), ("print(unknown)", "first or second")]:
            shell.run_cell(cell)
            assert capsys.readouterr().out.strip().endswith(f"an earlier cell stopped at an unanswered exercise ({exercise}).")
    finally:
        InteractiveShell.clear_instance()


def test_public_api():
    assert set(course_utils.__all__) <= set(dir(course_utils))


STUB = 'raise NotImplementedError("{} is not answered yet: replace this line with your code")'


def test_an_unanswered_exercise_shows_one_line_not_a_traceback(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from course_utils.exercises import explain_unanswered

    shell = InteractiveShell.instance()
    errors = []  # what the kernel would send as the cell's error output (JupyterLab's red box)
    shown = shell._showtraceback
    shell._showtraceback = lambda etype, value, stb: (errors.append((etype, stb)), shown(etype, value, stb))
    try:
        explain_unanswered(shell)
        shell.run_cell(f"def square(x):\n    {STUB.format('square')}\n")
        result = shell.run_cell("y = square(2)")
        line = "square is not answered yet: write it in its cell above, run that cell, then this one again."
        # the line to act on is the cell's error, in bold, with no traceback; the cell failed (Run All stops)
        assert errors == [(NotImplementedError, [f"\x1b[1m{line}\x1b[0m"])], errors
        assert isinstance(result.error_in_exec, NotImplementedError)
        assert capsys.readouterr().out.strip() == f"\x1b[1m{line}\x1b[0m"
        shell.run_cell("print(y)")  # the knock-on NameError: plain text, not an error box
        assert capsys.readouterr().out.strip() == (
            "NameError: name 'y' is not defined: an earlier cell stopped at an unanswered exercise (square).")
        shell.run_cell("from course_utils.exercises import needs\nneeds(square)")  # a demo waiting: plain text too
        assert capsys.readouterr().out.strip() == "finish square above to see this demo"
        assert len(errors) == 1, errors
        shell.run_cell("1 / 0")  # any other error keeps its traceback
        assert "ZeroDivisionError" in capsys.readouterr().out
        shell.run_cell("raise NotImplementedError('a library has no such kernel')")
        assert "Traceback" in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()


def test_needs_names_the_stubs_a_demo_uses():
    from course_utils.exercises import Unanswered, is_stub, needs

    namespace = {}
    exec(f"def done(x):\n    return x\n\ndef todo(x):\n    {STUB.format('todo')}\n\n"
         f"class Model:\n    def __init__(self, n):\n        self.n = n\n        {STUB.format('Model')}\n", namespace)
    done, todo, model = namespace["done"], namespace["todo"], namespace["Model"]
    assert not is_stub(done) and is_stub(todo) and is_stub(model)
    needs(done)  # nothing to finish: the demo goes on
    with pytest.raises(Unanswered, match="finish todo, Model above to see this demo"):
        needs(done, todo, model)
    assert Unanswered("x")._render_traceback_() == ["x"]  # IPython shows this line, no traceback


def test_plot_history_marks_whole_epochs_only():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils import plot_history

    axes = plot_history({"epoch": [1, 2], "train_loss": [2.0, 1.0], "val_acc": [0.5, 0.7]})
    for ax in axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close("all")
