"""Yes/no environment variables: one rule (nnx._env.env_flag) for every switch nnx reads."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import nnx.distributed as dist
from nnx._env import FALSE_WORDS, TRUE_WORDS, env_flag
from nnx.backends import mpi_transport as mt


@pytest.mark.parametrize("text", [*TRUE_WORDS, "TRUE", " Yes ", "On"])
def test_yes_words(text):
    assert env_flag("NNX_X", False, {"NNX_X": text}) is True


@pytest.mark.parametrize("text", [*FALSE_WORDS, "FALSE", " no ", "Off"])
def test_no_words(text):
    assert env_flag("NNX_X", True, {"NNX_X": text}) is False


@pytest.mark.parametrize("environ", [{}, {"NNX_X": ""}, {"NNX_X": "  "}])
def test_unset_or_empty_gives_the_default(environ):
    assert env_flag("NNX_X", True, environ) is True
    assert env_flag("NNX_X", False, environ) is False
    assert env_flag("NNX_X", environ=environ) is None


@pytest.mark.parametrize("text", ["maybe", "2", "y", "enabled", "-1"])
def test_anything_else_is_an_error_naming_the_variable(text):
    with pytest.raises(ValueError, match=rf"NNX_X={text!r} is not a yes/no value; use 1, "):
        env_flag("NNX_X", False, {"NNX_X": text})


def test_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("NNX_TEST_FLAG", "yes")
    assert env_flag("NNX_TEST_FLAG") is True
    monkeypatch.setenv("NNX_TEST_FLAG", "nope")
    with pytest.raises(ValueError, match="NNX_TEST_FLAG"):
        env_flag("NNX_TEST_FLAG")


def test_every_switch_follows_the_rule():
    """NNX_DISTRIBUTED and NNX_MPI_CUDA_AWARE accept the same words and refuse the same typos."""
    mpi = SimpleNamespace(Query_cuda_support=lambda: False)
    for text in ("on", "TRUE", "yes"):
        assert dist.launched_under_mpi({"NNX_DISTRIBUTED": text})
        assert mt.detect_cuda_aware(mpi, {mt.CUDA_AWARE_ENV: text}) is True
    for text in ("off", "False", "no"):
        assert not dist.launched_under_mpi({"NNX_DISTRIBUTED": text, "PMI_RANK": "0"})
        assert mt.detect_cuda_aware(SimpleNamespace(Query_cuda_support=lambda: True),
                                    {mt.CUDA_AWARE_ENV: text}) is False
    with pytest.raises(ValueError, match="NNX_DISTRIBUTED='maybe'"):
        dist.launched_under_mpi({"NNX_DISTRIBUTED": "maybe", "PMI_RANK": "0"})
    with pytest.raises(ValueError, match=f"{mt.CUDA_AWARE_ENV}='maybe'"):
        mt.detect_cuda_aware(mpi, {mt.CUDA_AWARE_ENV: "maybe"})
