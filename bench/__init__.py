"""nnx's training-step benchmark, side by side with PyTorch.

``python -m bench`` (or ``python bench/run.py``) times one training step
(forward, cross-entropy, backward, SGD with momentum and weight decay) of the
MLP, LeNet-5 and the wide CNN on every available nnx backend and on PyTorch's
own implementation of the same models, each measurement in a fresh process.
See bench/README.md for the fields of its JSON and how to read the ratios.

Modules: ``run`` (command line and orchestration), ``worker`` (one
measurement, run in a child process), ``models_torch`` (the PyTorch
reference models), ``seed_conv`` (the course report's nested-loop convolution),
``machine`` (machine description, BLAS and memory probes) and ``report``
(aggregation into comparisons and the table).
"""

OPENBLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
"""Variables that may be set on this machine and slow a current NumPy (see README)."""
