"""Same recipe, nnx vs PyTorch: test accuracy on the bundled MNIST sample.

Recipe (issue 5): SGD momentum 0.9, lr 0.05, weight decay 1e-4, batch 64,
MultiStepLR [5, 8] γ 0.1, 10 epochs, on the 4,000/1,000 split of the bundled
sample. Both frameworks see the same batches in the same order (nnx's
DataLoader permutation) and start from the same initial weights (nnx's seeded
init copied into PyTorch), so the difference is only arithmetic.

    python bench/recipe_vs_torch.py [--models mlp,lenet5] [--seeds 0,1,2]

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,lenet5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    results = [run(m, int(s), args.epochs) for m in args.models.split(",")
               for s in args.seeds.split(",")]
    summary = {}
    for m in args.models.split(","):
        rows = [r for r in results if r["model"] == m]
        summary[m] = {k: float(np.mean([r[k]["final"] for r in rows])) for k in ("nnx", "torch")}
    print(json.dumps({"runs": results, "mean_final_accuracy": summary}, indent=1))


if __name__ == "__main__":
    main()
