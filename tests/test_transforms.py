"""Batch transforms on the device: each against a NumPy reference on every backend, and the
DataLoader's seeded draws (reproducible, per epoch, across backends, resumes and ranks)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.data import DataLoader
from nnx.data import transforms as T


def images(n=6, c=3, s=8, seed=0):
    return np.random.default_rng(seed).random((n, c, s, s))


def ref_crop(x, offsets, p):
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, w = x.shape[2:]
    return np.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def test_normalize_matches_numpy(backend, dtype):
    x = images()
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.1)
    ref = (x - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    xb = nnx.asarray(x.astype(dtype), backend)
    out = T.Normalize(mean, std).apply(xb)
    assert backend.same_place(out) and nnx.backends.dtype_name(out.dtype) == dtype
    nt.assert_close(out, ref, dtype, what="normalize")
    np.testing.assert_array_equal(nnx.to_numpy(xb), x.astype(dtype))  # input unchanged


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_random_crop_is_the_padded_images_window_at_its_offset(backend, padding):
    x = images(n=2 * (2 * padding + 1) ** 2, c=2, s=6)
    offsets = np.array([(dy, dx) for dy in range(2 * padding + 1)
                        for dx in range(2 * padding + 1)] * 2, dtype=np.int64)
    out = T.RandomCrop(padding).apply(nnx.asarray(x.astype("float32"), backend),
                                      nnx.asarray(offsets, backend))
    assert tuple(out.shape) == x.shape and backend.same_place(out)
    np.testing.assert_array_equal(nnx.to_numpy(out), ref_crop(x, offsets, padding)
                                  .astype("float32"))
    centre = [i for i, (dy, dx) in enumerate(offsets) if dy == dx == padding]
    np.testing.assert_array_equal(nnx.to_numpy(out)[centre], x[centre].astype("float32"))


def test_random_flip_mirrors_the_chosen_images(backend):
    x = images(n=4)
    flips = np.array([1, 0, 0, 1])
    out = nnx.to_numpy(T.RandomHorizontalFlip().apply(nnx.asarray(x, backend),
                                                      nnx.asarray(flips, backend)))
    np.testing.assert_array_equal(out[[0, 3]], x[[0, 3], :, :, ::-1])
    np.testing.assert_array_equal(out[[1, 2]], x[[1, 2]])


def augmenting_loader(n=50, batch=16, seed=3, **kw):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    t = T.Compose([T.RandomCrop(2), T.RandomHorizontalFlip(), T.Normalize((0.5,) * 3, (0.25,) * 3)])
    return DataLoader(data, np.arange(n) % 10, batch, seed=seed, transform=t, **kw), data


def reference_batches(loader, data, epoch):
    """What the loader must yield, computed in NumPy from its documented seeding rule."""
    from nnx.data.loader import AUGMENT_TAG

    out = []
    for step, idx in enumerate(loader.batch_indices(epoch)):
        rng = np.random.default_rng([loader.seed, epoch, step, AUGMENT_TAG])
        offsets = rng.integers(0, 5, size=(len(idx), 2))
        flips = rng.random(len(idx)) < 0.5
        x = ref_crop(data[idx].astype(np.float64) / 255, offsets, 2)
        x[flips] = x[flips][..., ::-1]
        out.append((x - 0.5) / 0.25)
    return out


def test_augmented_batches_follow_the_seeding_rule_on_every_backend(backend):
    loader, data = augmenting_loader()
    for epoch in (0, 1):
        got = list(loader.batches(epoch, backend=backend))
        want = reference_batches(loader, data, epoch)
        assert len(got) == len(want) == 4
        for (x, _), ref in zip(got, want):
            assert backend.same_place(x)
            nt.assert_close(x, ref, "float32", what=f"epoch {epoch}")


def test_same_seed_same_batches_other_epoch_other_batches():
    a, _ = augmenting_loader()
    b, _ = augmenting_loader()
    first = [nnx.to_numpy(x) for x, _ in a.batches(0)]
    np.testing.assert_array_equal(first[1], nnx.to_numpy(list(b.batches(0))[1][0]))
    assert not np.array_equal(first[0], nnx.to_numpy(next(iter(a.batches(1)))[0]))


def test_resuming_inside_an_epoch_gives_the_same_augmented_batches():
    loader, _ = augmenting_loader()
    full = [nnx.to_numpy(x) for x, _ in loader.batches(2)]
    later = [nnx.to_numpy(x) for x, _ in loader.iter_from(2, 2)]
    for got, want in zip(later, full[2:]):
        np.testing.assert_array_equal(got, want)


def test_ranks_together_see_what_one_process_sees():
    one, _ = augmenting_loader(n=48, batch=16)
    ranks = [augmenting_loader(n=48, batch=16, rank=r, world_size=2)[0] for r in (0, 1)]
    for step, (x, _) in enumerate(one.batches(0)):
        parts = [nnx.to_numpy(list(r.batches(0))[step][0]) for r in ranks]
        np.testing.assert_array_equal(np.concatenate(parts), nnx.to_numpy(x))


def test_configs_round_trip_and_bad_ones_are_clear():
    t = T.Compose([T.RandomCrop(4), T.RandomHorizontalFlip(0.3), T.Normalize((0.1,), (0.2,))])
    again = T.from_config(t.config())
    assert again.config() == t.config()
    for bad, match in [({"name": "Blur"}, "unknown transform"),
                       ({"name": "RandomCrop", "padding": -1}, "padding must be an int >= 0"),
                       ({"name": "Normalize", "mean": [0.1], "std": [0.0]}, "std must be > 0"),
                       ({"name": "Normalize", "mean": [0.1, 0.2], "std": [1.0]}, "2 means but 1"),
                       ({"name": "RandomHorizontalFlip", "p": 2}, r"p must lie in \[0, 1\]"),
                       ({"name": "RandomCrop", "size": 3}, "bad RandomCrop config")]:
        with pytest.raises(ValueError, match=match):
            T.from_config(bad)
    with pytest.raises(ValueError, match=r"Normalize\(.*\): expected images \(B, 1, H, W\)"):
        T.Normalize((0.1,), (0.2,)).apply(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match="transform must be"):
        DataLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), 2, transform=lambda x: x)
