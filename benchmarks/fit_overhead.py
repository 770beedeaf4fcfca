"""What `course_utils.fit` costs over a plain hand-written loop, on the same model and data.

    python benchmarks/fit_overhead.py [--workload cnn|mlp] [--runs 5] [--device cpu|cuda] [--amp auto|bf16|off] [--threads N]

Both sides train one epoch and then evaluate loss and accuracy on a validation set; the hand-written
loop keeps a running mean of the loss the way a real loop does. Runs alternate (fit, loop, fit, ...)
so that background load hits both alike; the script prints every run, the medians and their ratio.
"""
import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from course_utils import accuracy, fit, seed_everything
from course_utils.data import load_digits_split, load_mnist_subset, make_loader


def workload(name, device):
    if name == "cnn":  # the CNN notebook's scale: 4,000 MNIST images, a small conv net
        X_train, X_val, y_train, y_val = load_mnist_subset()
        def model():
            return nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
        batch = 64
    else:  # the worst case for overhead: tiny steps (8x8 digits, a 64-128-10 MLP)
        X_train, X_val, y_train, y_val = (torch.as_tensor(a) for a in load_digits_split())
        X_train, X_val = X_train.float(), X_val.float()
        def model():
            return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        batch = 32
    train = make_loader(X_train, y_train, batch_size=batch, shuffle=True, device=device, seed=0)
    val = make_loader(X_val, y_val, batch_size=256, device=device)
    return model, train, val


def hand_loop(model, train, val, optimizer, device, amp_dtype):
    model.train()
    total, count = 0.0, 0
    for x, y in train:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    model.eval()
    val_loss = val_acc = 0.0
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for x, y in val:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            val_loss += F.cross_entropy(out, y).item() * len(y)
            val_acc += accuracy(out, y).item() * len(y)
    return total / count


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="off",
                        help="mixed precision for both sides (CUDA only)")
    parser.add_argument("--no-progress", action="store_true", help="measure fit without its tqdm bar")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = False if args.amp == "off" else args.amp
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp) if device.type == "cuda" else None
    make_model, train, val = workload(args.workload, device)
    print(f"workload {args.workload}, device {device}, amp {args.amp}, threads {torch.get_num_threads()}, "
          f"{len(train.dataset)} training samples, {args.runs} runs each (+1 warm-up)")

    times = {"fit": [], "hand loop": []}
    for run in range(args.runs + 1):
        for name in times:
            seed_everything(run)
            model = make_model().to(device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            if name == "fit":
                seconds = timed(lambda: fit(model, train, val, F.cross_entropy, optimizer, epochs=1, device=device,
                                            amp=amp, metrics={"acc": accuracy},
                                            progress=not args.no_progress), device)
            else:
                seconds = timed(lambda: hand_loop(model, train, val, optimizer, device, amp_dtype), device)
            if run > 0:  # the first round warms up caches and kernels
                times[name].append(seconds)
                print(f"  run {run}: {name:<9} {seconds:.3f} s")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"median {name:<9} {value:.3f} s/epoch")
    print(f"ratio fit / hand loop: {medians['fit'] / medians['hand loop']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
