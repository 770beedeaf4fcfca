"""The training loop every notebook uses: `fit` and `evaluate`.

What it does for you, and nothing more: moves the model and each batch to the device (non-blocking
copies; build loaders with `course_utils.data.make_loader` to get pinned memory on CUDA), mixed
precision only where it pays (see `choose_amp`), gradient clipping, metrics, a tqdm bar with the live
loss, a checkpoint after every epoch that `fit` resumes from, early stopping, and a returned history.
"""
import math
import os
import random
import time
from contextlib import nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

# Mixed precision pays once a step does enough matrix work. Measured on an H100 (notes in the
# README): a 3M-parameter transformer was 1.9x faster with bf16 at batch 256 (~8e8 parameter-samples
# per step) and slower at batch 64 (~2e8); a 56k-parameter CNN was slower at every batch size.
AMP_MIN_WORK = 4e8


def accuracy(outputs, targets):
    """Fraction of rows whose arg-max matches the integer target."""
    return (outputs.argmax(dim=-1) == targets).float().mean()


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _batch_size(x):
    while isinstance(x, (list, tuple)):
        x = x[0]
    return len(x)


def choose_amp(model, device, batch_size, amp="auto"):
    """Decide the autocast dtype for a run, or None for full precision.

    amp: "auto" (CUDA only, and only when parameters x batch size >= AMP_MIN_WORK), True (bf16 where
    the GPU supports it, else fp16), "bf16", "fp16", or False. Never on the CPU: autocast there is
    slower for course-size models and changes results.
    """
    device = torch.device(device)
    if amp is False or amp is None or device.type != "cuda":
        return None
    if amp == "auto":
        work = sum(p.numel() for p in model.parameters()) * batch_size
        if work < AMP_MIN_WORK:
            return None
        amp = True
    if amp is True:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp in ("bf16", "fp16"):
        return torch.bfloat16 if amp == "bf16" else torch.float16
    raise ValueError(f"amp must be 'auto', True, False, 'bf16' or 'fp16', got {amp!r}")


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def evaluate(model, loader, loss_fn=None, metrics=None, device=None, amp_dtype=None):
    """Mean loss and metrics over a loader, under torch.inference_mode(). Returns a dict."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    metrics = metrics or {}
    was_training = model.training
    model.eval()
    totals = {name: torch.zeros((), device=device) for name in ["loss", *metrics] if name != "loss" or loss_fn}
    count = 0
    with torch.inference_mode(), _autocast(device, amp_dtype):
        for x, y in loader:
            x, y = _to_device(x, device), _to_device(y, device)
            out = model(x)
            n = _batch_size(y)
            if loss_fn is not None:
                totals["loss"] += loss_fn(out, y).float() * n
            for name, fn in metrics.items():
                totals[name] += torch.as_tensor(fn(out, y), device=device).float() * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got an empty loader")
    return {name: (total / count).item() for name, total in totals.items()}


def _rng_state(loader):
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(loader, "generator", None) is not None:  # a loader that shuffles with its own generator
        state["loader"] = loader.generator.get_state()
    return state


def _set_rng_state(state, loader):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and getattr(loader, "generator", None) is not None:
        loader.generator.set_state(state["loader"])


def _save_checkpoint(path, **state):
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a run killed mid-save keeps the previous checkpoint


def fit(model, train_loader, val_loader=None, loss_fn=None, optimizer=None, *, epochs=1, device=None,
        amp="auto", grad_clip=None, metrics=None, scheduler=None, checkpoint=None, resume=True,
        patience=None, monitor="val_loss", progress=True):
    """Train `model` and return its history: a dict of per-epoch lists.

    Batches are `(inputs, targets)`; the loss is `loss_fn(model(inputs), targets)`. `metrics` maps a
    name to `fn(outputs, targets)`; they are computed on `val_loader` (as `val_<name>`) with the
    validation loss. `checkpoint` is a file saved after each epoch; with `resume` an existing one is
    loaded and training continues after its last epoch (so a finished run is skipped). `patience`
    stops after that many epochs without improvement of `monitor` and restores the best weights.
    `scheduler.step()` is called once per epoch.
    """
    if loss_fn is None or optimizer is None:
        raise TypeError("fit() needs a loss_fn and an optimizer")
    if patience is not None and val_loader is None and monitor.startswith("val_"):
        raise ValueError(f"early stopping on {monitor!r} needs a val_loader")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    metrics = metrics or {}
    history = {"epoch": [], "train_loss": [], "time": []}
    if val_loader is not None:
        history["val_loss"] = []
        history.update({f"val_{name}": [] for name in metrics})

    batch_size = getattr(train_loader, "batch_size", None) or _batch_size(next(iter(train_loader))[0])
    amp_dtype = choose_amp(model, device, batch_size, amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    minimize = "loss" in monitor
    best, best_state, bad_epochs, start = math.inf if minimize else -math.inf, None, 0, 0
    if checkpoint and resume and os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        history, start = state["history"], state["epoch"] + 1
        if state["stopped"]:
            start = epochs  # early stopping already ended this run
        best, best_state, bad_epochs = state["best"], state["best_state"], state["bad_epochs"]
        _set_rng_state(state["rng"], train_loader)
        if start < epochs:
            print(f"Resuming from {checkpoint} after epoch {start}")
        else:
            print(f"Loaded {checkpoint}: training already finished, skipping it")

    steps = len(train_loader) if hasattr(train_loader, "__len__") else None
    bar = tqdm(total=steps and steps * (epochs - start), disable=not progress or start >= epochs,
               unit="batch", dynamic_ncols=True)
    model.train()
    for epoch in range(start, epochs):
        bar.set_description(f"epoch {epoch + 1}/{epochs}")
        tic = time.perf_counter()
        total_loss, count, last_shown = torch.zeros((), device=device), 0, 0.0
        for x, y in train_loader:
            x, y = _to_device(x, device), _to_device(y, device)
            with _autocast(device, amp_dtype):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            n = _batch_size(y)
            total_loss += loss.detach().float() * n
            count += n
            bar.update()
            now = time.monotonic()
            if progress and now - last_shown > 0.5:  # a host sync at most twice a second
                bar.set_postfix(loss=f"{(total_loss / count).item():.4f}", refresh=False)
                last_shown = now
        if count == 0:
            raise ValueError("fit() got an empty train_loader")
        if scheduler is not None:
            scheduler.step()
        history["epoch"].append(epoch + 1)
        history["train_loss"].append((total_loss / count).item())
        if val_loader is not None:
            for name, value in evaluate(model, val_loader, loss_fn, metrics, device, amp_dtype).items():
                history[f"val_{name}"].append(value)
        history["time"].append(time.perf_counter() - tic)
        bar.set_postfix({k: f"{v[-1]:.4f}" for k, v in history.items() if k not in ("epoch", "time")})

        stop = False
        if patience is not None:
            value = history[monitor][-1]
            if (value < best) if minimize else (value > best):
                best, bad_epochs = value, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                stop = bad_epochs >= patience
        if checkpoint:
            _save_checkpoint(checkpoint, model=model.state_dict(), optimizer=optimizer.state_dict(),
                             scheduler=scheduler.state_dict() if scheduler is not None else None,
                             scaler=scaler.state_dict() if scaler is not None else None,
                             history=history, epoch=epoch, best=best, best_state=best_state,
                             bad_epochs=bad_epochs, stopped=stop, rng=_rng_state(train_loader))
        if stop:
            print(f"Early stopping after epoch {epoch + 1}: {monitor} has not improved for {patience} epochs")
            bar.total = bar.n  # an intended stop: the bar ends complete (a notebook bar left short turns red)
            bar.refresh()
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
