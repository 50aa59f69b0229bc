"""The training recipe of ``nnx train``: its flags, defaults, and one rule for ``--resume``.

A recipe is every setting that shapes the numbers a run produces: the dataset and
its preprocessing, the model, dtype, seed, batch size, optimizer and its
hyperparameters, the schedule. A
resumed run continues its recipe exactly:

- a recipe flag left out is taken from the checkpoint;
- a recipe flag given with the checkpoint's value is fine;
- a recipe flag given with another value is an error naming every such flag,
  so the checkpoint's record and what trains never disagree.

``--epochs`` is not part of the recipe: it is the target, and a resumed run may
train further. Flags that only say how to run (``--backend``, ``--device``,
``--threads``, ``--progress``) may change freely.
"""

from __future__ import annotations

import math
from typing import Any

#: Recipe settings and their defaults (the course recipe: LeNet-5, SGD momentum 0.9,
#: lr 0.05, weight decay 1e-4, batch 64, MultiStepLR at epochs 5 and 8).
DEFAULTS: dict[str, Any] = {
    "dataset": "sample", "normalize": True, "augment": False, "model": "lenet5",
    "dtype": "float32", "seed": 0, "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
    "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4, "betas": [0.9, 0.999],
    "eps": 1e-8, "no_decay_bias_norm": False, "scheduler": "multistep", "step_size": 5,
    "milestones": [5, 8], "gamma": 0.1, "patience": 10, "warmup_epochs": 0,
    "scheduler_interval": "epoch", "clip_grad_norm": 0.0, "label_smoothing": 0.0,
}
#: Defaults that depend on the optimizer (PyTorch's where the course recipe is silent).
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {}, "momentum": {},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
    "rmsprop": {"lr": 1e-2, "momentum": 0.0, "weight_decay": 0.0},
}
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": ("sample", "mnist", "fashion-mnist", "cifar10"),
    "model": ("mlp", "lenet5", "widecnn", "resnet8", "resnet20", "convnet"),
    "dtype": ("float32", "float64"),
    "optimizer": ("sgd", "momentum", "adam", "adamw", "rmsprop"),
    "scheduler": ("none", "step", "multistep", "exponential", "cosine", "onecycle", "plateau"),
    "scheduler_interval": ("epoch", "step"),
}
#: Settings that only some recipes use: (the setting that decides, the values that use it).
APPLIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "nesterov": ("optimizer", ("sgd",)),
    "momentum": ("optimizer", ("sgd", "momentum", "rmsprop")),
    "betas": ("optimizer", ("adam", "adamw")),
    "eps": ("optimizer", ("adam", "adamw", "rmsprop")),
    "step_size": ("scheduler", ("step",)),
    "milestones": ("scheduler", ("multistep",)),
    "gamma": ("scheduler", ("step", "multistep", "exponential", "plateau")),
    "patience": ("scheduler", ("plateau",)),
    "warmup_epochs": ("scheduler", ("none", "step", "multistep", "exponential", "cosine")),
    "scheduler_interval": ("scheduler", ("step", "multistep", "exponential", "cosine", "onecycle")),
}
_SCHEDULER_NAMES = {"StepLR": "step", "MultiStepLR": "multistep", "ExponentialLR": "exponential"}


class RecipeError(ValueError):
    """A recipe flag that is invalid, unused by the recipe, or contradicts a checkpoint."""


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_betas(text: str) -> list[float]:
    try:
        betas = [float(b) for b in str(text).split(",")]
    except ValueError:
        betas = []
    if len(betas) != 2:
        raise RecipeError(f"--betas must be two numbers separated by a comma (e.g. 0.9,0.999), "
                          f"got {text!r}")
    return betas


def parse_milestones(text: str) -> list[int]:
    try:
        return [int(m) for m in str(text).split(",") if m.strip()]
    except ValueError:
        raise RecipeError(f"--milestones must be integers separated by commas, got {text!r}") \
            from None


def _validate(recipe: dict[str, Any], where: str) -> None:
    """Raise RecipeError for a value outside what the recipe accepts (``where``: the source)."""
    for key, options in CHOICES.items():
        if recipe[key] not in options:
            raise RecipeError(f"{flag(key)} must be one of {', '.join(options)}, got "
                              f"{recipe[key]!r}{where}")
    for key, minimum in (("batch_size", 1), ("seed", 0), ("step_size", 1), ("patience", 0),
                         ("warmup_epochs", 0)):
        v = recipe[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise RecipeError(f"{flag(key)} must be an integer >= {minimum}, got {v!r}{where}")
    for key in ("lr", "momentum", "weight_decay", "gamma", "eps", "clip_grad_norm",
                "label_smoothing"):
        v = recipe[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecipeError(f"{flag(key)} must be a finite number, got {v!r}{where}")
    for key in ("clip_grad_norm", "eps"):
        if recipe[key] < 0:
            raise RecipeError(f"{flag(key)} must be >= 0, got {recipe[key]!r}{where}")
    if not 0.0 <= recipe["label_smoothing"] <= 1.0:
        raise RecipeError(f"--label-smoothing must lie in [0, 1], got "
                          f"{recipe['label_smoothing']!r}{where}")
    betas = recipe["betas"]
    if not isinstance(betas, list) or len(betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas):
        raise RecipeError(f"--betas must be two numbers in [0, 1), got {betas!r}{where}")
    for key in ("nesterov", "normalize", "augment", "no_decay_bias_norm"):
        if not isinstance(recipe[key], bool):
            raise RecipeError(f"{flag(key)} must be on or off, got {recipe[key]!r}{where}")
    ms = recipe["milestones"]
    if not isinstance(ms, list) or not all(isinstance(m, int) and not isinstance(m, bool)
                                           for m in ms):
        raise RecipeError(f"--milestones must be a list of integers, got {ms!r}{where}")


def saved_recipe(meta: dict[str, Any]) -> dict[str, Any]:
    """The recipe recorded in a checkpoint's metadata.

    Checkpoints record it under ``config``; for settings a checkpoint of nnx 0.1
    did not record there, the optimizer, scheduler and trainer states tell.
    """
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    out = {k: config[k] for k in DEFAULTS if k in config}
    opt = meta.get("optimizer") if isinstance(meta.get("optimizer"), dict) else {}
    hyper = opt.get("hyperparameters") if isinstance(opt.get("hyperparameters"), dict) else {}
    sched = meta.get("scheduler") if isinstance(meta.get("scheduler"), dict) else None
    trainer = meta.get("trainer") if isinstance(meta.get("trainer"), dict) else {}
    if "dtype" not in out and meta.get("dtype") in CHOICES["dtype"]:
        out["dtype"] = meta["dtype"]
    if "nesterov" not in out and opt.get("type") == "SGD" and "nesterov" in hyper:
        out["nesterov"] = hyper["nesterov"]
    if sched is not None and sched.get("type") in _SCHEDULER_NAMES:
        out.setdefault("scheduler", _SCHEDULER_NAMES[sched["type"]])
        for key in ("step_size", "milestones", "gamma"):
            if key in sched:
                out.setdefault(key, sched[key])
    if "scheduler_interval" not in out and "scheduler_interval" in trainer:
        out["scheduler_interval"] = trainer["scheduler_interval"]
    if "dataset" not in out:  # nnx 0.1 trained on the sample or on an MNIST folder, as is
        out["dataset"] = "sample" if config.get("data") is None else "mnist"
        out.setdefault("normalize", False)
        out.setdefault("augment", False)
    return out


def resolve(given: dict[str, Any], saved: dict[str, Any] | None = None,
            checkpoint: str = "") -> dict[str, Any]:
    """The recipe to train with.

    ``given``: the recipe flags the user passed (None for a flag left out), and
    ``data`` (the ``--data`` folder: without ``--dataset`` it is read as MNIST-format
    IDX files, the dataset ``mnist``). ``saved``: the checkpoint's recipe when
    resuming. Raises RecipeError naming every flag that contradicts the checkpoint,
    and a flag given explicitly that the chosen recipe does not use (``--nesterov``
    with ``--optimizer momentum``, ``--step-size`` without ``--scheduler step``, ...).
    """
    if given.get("milestones") is not None and isinstance(given["milestones"], str):
        given = {**given, "milestones": parse_milestones(given["milestones"])}
    if given.get("betas") is not None and isinstance(given["betas"], str):
        given = {**given, "betas": parse_betas(given["betas"])}
    explicit = {k: v for k, v in given.items() if k in DEFAULTS and v is not None}
    if saved is not None:
        clashes = [f"{flag(k)} {show(saved[k])} there, {show(v)} here"
                   for k, v in explicit.items() if k in saved and saved[k] != v]
        if clashes:
            raise RecipeError(
                f"--resume: {checkpoint} was trained with other settings ({'; '.join(clashes)}); "
                "a resumed run continues its recipe: leave those flags out, or start a new run "
                "(another --out)")
    optimizer = explicit.get("optimizer", (saved or {}).get("optimizer", DEFAULTS["optimizer"]))
    recipe = {**DEFAULTS, **OPTIMIZER_DEFAULTS.get(optimizer, {}), **(saved or {}), **explicit}
    if recipe["scheduler"] == "onecycle" and "scheduler_interval" not in explicit and \
            "scheduler_interval" not in (saved or {}):
        recipe["scheduler_interval"] = "step"  # a cycle over every batch, as PyTorch's
    if given.get("data") is not None and "dataset" not in explicit and saved is None:
        recipe["dataset"] = "mnist"  # --data alone: a folder of MNIST-format IDX files
    _validate(recipe, f" (recorded in {checkpoint})" if saved is not None else "")
    if recipe["scheduler"] == "plateau" and not 0 < recipe["gamma"] < 1:
        raise RecipeError(f"--gamma is plateau's reduction factor and must lie in (0, 1), got "
                          f"{recipe['gamma']!r}")
    if recipe["scheduler"] == "plateau" and recipe["scheduler_interval"] != "epoch":
        raise RecipeError("--scheduler plateau follows the validation loss once per epoch; "
                          "--scheduler-interval step does not apply")
    if recipe["scheduler"] == "onecycle" and recipe["scheduler_interval"] != "step":
        raise RecipeError("--scheduler onecycle rises and falls over every batch of the run (as "
                          "PyTorch's OneCycleLR); --scheduler-interval epoch does not apply")
    for key, (decider, users) in APPLIES.items():
        if key in explicit and recipe[decider] not in users:
            if explicit[key] is False or (key == "warmup_epochs" and explicit[key] == 0):
                continue
            raise RecipeError(f"{flag(key)} applies only to {flag(decider)} {' or '.join(users)}, "
                              f"not {flag(decider)} {recipe[decider]}")
    return recipe


__all__ = ["CHOICES", "DEFAULTS", "OPTIMIZER_DEFAULTS", "RecipeError", "resolve", "saved_recipe"]
