"""Same recipe, nnx vs PyTorch: test accuracy.

The course recipe (``--recipe course``, default): SGD momentum 0.9, lr 0.05, weight
decay 1e-4, batch 64, MultiStepLR [5, 8] γ 0.1, 10 epochs, on the 4,000/1,000 split
of the bundled sample, for the MLP and LeNet-5.

The modern recipe (``--recipe modern --data DIR``, the full MNIST): ``nnx train`` with
:data:`MODERN` (the ConvNet with BatchNorm and dropout, random 2-pixel crops,
SGD Nesterov momentum, one epoch of linear warm-up then cosine decay per batch, label
smoothing 0.1, weight decay 5e-4, 15 epochs) run through the real command, against
the same recipe in PyTorch.

Both frameworks see the same batches in the same order (nnx's DataLoader
permutation, and its augmentation draws) and start from the same initial weights
(nnx's seeded init copied into PyTorch), so the difference is arithmetic (and, in the
modern recipe, each framework's own dropout masks).

    python -m bench.recipe_vs_torch [--models mlp,lenet5] [--seeds 0,1,2]
    python -m bench.recipe_vs_torch --recipe modern --data ../shared/data/mnist --seeds 0,1,2

Prints JSON: per model and seed the final and best test accuracy of each.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def torch_model(name: str):
    import torch.nn as tnn

    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 600), tnn.ReLU(), tnn.Linear(600, 10))
    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))


def copy_weights(nnx_model, tmodel) -> None:
    import torch

    import nnx

    tparams = [p for p in tmodel.parameters()]
    nparams = [p for _, p in nnx_model.named_parameters()]
    assert len(tparams) == len(nparams)
    with torch.no_grad():
        for tp, p in zip(tparams, nparams):
            a = nnx.to_numpy(p.data)
            if a.ndim == 2:  # nnx Linear stores (in, out); torch (out, in)
                a = a.T
            tp.copy_(torch.from_numpy(np.ascontiguousarray(a)))


def run(name: str, seed: int, epochs: int = 10) -> dict:
    import torch
    import torch.nn.functional as F

    import nnx
    from nnx.data import DataLoader, load_mnist

    nnx.set_backend("numpy")
    data = load_mnist()
    nnx.manual_seed(seed)
    model = nnx.models.MLP((784, 600, 10)) if name == "mlp" else nnx.models.LeNet5()
    opt = nnx.optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = nnx.lr_scheduler.MultiStepLR(opt, [5, 8], 0.1)
    train = DataLoader(data.train_images, data.train_labels, 64, shuffle=True, seed=seed)
    test = DataLoader(data.test_images, data.test_labels, 500, shuffle=False)
    trainer = nnx.Trainer(model, opt, scheduler=sched, progress=False, log=lambda s: None)
    t0 = time.perf_counter()
    hist = trainer.fit(train, test, epochs=epochs)
    t_nnx = time.perf_counter() - t0
    nnx_acc = [e["val_acc"] for e in hist["epochs"]]

    nnx.manual_seed(seed)
    fresh = nnx.models.MLP((784, 600, 10)) if name == "mlp" else nnx.models.LeNet5()
    tmodel = torch_model(name)
    copy_weights(fresh, tmodel)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    tsched = torch.optim.lr_scheduler.MultiStepLR(topt, [5, 8], 0.1)
    xt = torch.from_numpy(data.test_images[:, None].astype(np.float32) / 255)
    yt = torch.from_numpy(data.test_labels)
    torch_acc = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        train.set_epoch(epoch)
        tmodel.train()
        for x, y in train:
            topt.zero_grad()
            loss = F.cross_entropy(tmodel(torch.from_numpy(nnx.to_numpy(x))),
                                   torch.from_numpy(nnx.to_numpy(y)))
            loss.backward()
            topt.step()
        tsched.step()
        with torch.no_grad():
            torch_acc.append(float((tmodel(xt).argmax(1) == yt).float().mean()))
    t_torch = time.perf_counter() - t0
    return {"model": name, "seed": seed,
            "nnx": {"final": nnx_acc[-1], "best": max(nnx_acc), "seconds": round(t_nnx, 1)},
            "torch": {"final": torch_acc[-1], "best": max(torch_acc),
                      "seconds": round(t_torch, 1)}}


#: The modern recipe's flags for ``nnx train`` (the README's command, without --data/--seed).
MODERN = ["--model", "convnet", "--augment", "--optimizer", "sgd", "--momentum", "0.9",
          "--nesterov", "--lr", "0.1", "--weight-decay", "5e-4", "--batch-size", "128",
          "--scheduler", "cosine", "--scheduler-interval", "step", "--warmup-epochs", "1",
          "--label-smoothing", "0.1", "--epochs", "15"]


def run_modern(seed: int, data_dir: str, out: str, reuse: bool = False) -> dict:
    """The modern recipe: ``nnx train`` itself, then the same in PyTorch. With ``reuse``,
    a finished ``nnx train`` run already in the output folder is read, not run again (its
    time is the sum of its epochs'). The seed's result is also written to
    ``<out>/seed<N>.json`` as soon as it is known."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F

    import nnx
    from bench.models_torch import convnet
    from nnx.cli_train import _transforms
    from nnx.data import DataLoader
    from nnx.datasets import load
    from nnx.recipe import resolve

    run_dir = Path(out) / f"nnx-seed{seed}"
    cmd = [str(Path(sys.executable).with_name("nnx")), "train", *MODERN, "--data", data_dir,
           "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress",
           "--backend", "numpy"]
    epochs_wanted = int(MODERN[MODERN.index("--epochs") + 1])
    hist_path = run_dir / "history.json"
    done = hist_path.is_file() and len(json.loads(hist_path.read_text())["epochs"]) == epochs_wanted
    if reuse and done:
        t_nnx = sum(e["seconds"] for e in json.loads(hist_path.read_text())["epochs"])
    else:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={k: v for k, v in os.environ.items()
                                             if k != "NNX_BACKEND"})
        t_nnx = time.perf_counter() - t0
    hist = json.loads(hist_path.read_text())
    nnx_acc = [e["val_acc"] for e in hist["epochs"]]

    flags = dict(zip(MODERN[::2], MODERN[1::2]))
    given = {"model": "convnet", "augment": True, "nesterov": True, "seed": seed,
             "data": data_dir}
    recipe = resolve(given)
    data = load("mnist", root=data_dir)
    train_t, eval_t = _transforms(recipe, data, None)
    nnx.manual_seed(seed)
    fresh = nnx.models.for_images("ConvNet", data.shape, 10)
    tmodel = convnet()
    host = {k: nnx.to_numpy(v) for k, v in fresh.state_dict().items()}
    tmodel.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v.T if v.ndim == 2 else v))
                            for k, v in host.items()})  # nnx's Linear weight is (in, out)
    torch.manual_seed(seed)
    lr, bs, epochs = float(flags["--lr"]), int(flags["--batch-size"]), int(flags["--epochs"])
    train = DataLoader(data.train_images, data.train_labels, bs, seed=seed, transform=train_t)
    test = DataLoader(data.test_images, data.test_labels, 1000, shuffle=False, transform=eval_t)
    topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.9, nesterov=True,
                           weight_decay=float(flags["--weight-decay"]))
    warm, total = len(train), epochs * len(train)
    tsched = torch.optim.lr_scheduler.SequentialLR(topt, [
        torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.1, total_iters=warm),
        torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=max(1, total - warm))],
        milestones=[warm])
    torch_acc = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        tmodel.train()
        for x, y in train.batches(epoch):
            topt.zero_grad()
            loss = F.cross_entropy(tmodel(torch.from_numpy(nnx.to_numpy(x))),
                                   torch.from_numpy(nnx.to_numpy(y)), label_smoothing=0.1)
            loss.backward()
            topt.step()
            tsched.step()
        tmodel.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test.batches(0):
                out_ = tmodel(torch.from_numpy(nnx.to_numpy(x)))
                correct += int((out_.argmax(1) == torch.from_numpy(nnx.to_numpy(y))).sum())
        torch_acc.append(correct / len(data.test_labels))
    t_torch = time.perf_counter() - t0
    result = {"model": "convnet", "seed": seed,
              "nnx": {"final": nnx_acc[-1], "best": max(nnx_acc), "seconds": round(t_nnx, 1),
                      "per_epoch": nnx_acc},
              "torch": {"final": torch_acc[-1], "best": max(torch_acc),
                        "seconds": round(t_torch, 1), "per_epoch": torch_acc}}
    (Path(out) / f"seed{seed}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=["course", "modern"], default="course")
    p.add_argument("--data", default=None, help="the full MNIST folder (modern recipe)")
    p.add_argument("--out", default="runs/recipe-vs-torch", help="where nnx's runs are written")
    p.add_argument("--models", default="mlp,lenet5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--reuse", action="store_true",
                   help="modern recipe: read finished nnx runs in --out instead of rerunning them")
    args = p.parse_args()
    if args.recipe == "modern":
        if args.data is None:
            p.error("--recipe modern needs --data DIR (the full MNIST)")
        runs = [run_modern(int(s), args.data, args.out, args.reuse)
                for s in args.seeds.split(",")]
        summary = {k: {"mean_final": float(np.mean([r[k]["final"] for r in runs])),
                       "min_final": float(np.min([r[k]["final"] for r in runs]))}
                   for k in ("nnx", "torch")}
        print(json.dumps({"recipe": "nnx train " + " ".join(MODERN), "runs": runs,
                          "summary": summary}, indent=1))
        return
    results = [run(m, int(s), args.epochs) for m in args.models.split(",")
               for s in args.seeds.split(",")]
    summary = {}
    for m in args.models.split(","):
        rows = [r for r in results if r["model"] == m]
        summary[m] = {k: float(np.mean([r[k]["final"] for r in rows])) for k in ("nnx", "torch")}
    print(json.dumps({"runs": results, "mean_final_accuracy": summary}, indent=1))


if __name__ == "__main__":
    main()
