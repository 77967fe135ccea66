"""The CPU path's replay-buffer poll (coars_verl.cpu.activate): verl's trainers build the buffer
without an interval and get the short one; an interval given by the caller (by keyword or by
position) is kept. A patch that ignored the default, or overrode an explicit value, fails."""

import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from coars_verl.cpu import activate

ARGS = ("sync", OmegaConf.create({}), None, "drop", OmegaConf.create({}))


@pytest.fixture
def short_poll(monkeypatch):
    original = ReplayBuffer.__init__
    assert not getattr(original, "_coars_short_poll", False)  # this process did not ask for the CPU platform
    monkeypatch.setattr(ReplayBuffer, "__init__", original)  # restored after the test
    activate._short_replay_buffer_poll()
    assert ReplayBuffer.__init__ is not original
    return original


def test_verl_default_is_the_two_second_poll_this_patch_exists_for():
    assert ReplayBuffer(*ARGS).poll_interval == 2.0


def test_buffers_built_without_an_interval_poll_often(short_poll):
    assert ReplayBuffer(*ARGS).poll_interval == activate.REPLAY_POLL_INTERVAL_S
    assert ReplayBuffer(*ARGS[:2], max_off_policy_threshold=None, max_off_policy_strategy="drop",
                        sampler_kwargs={}).poll_interval == activate.REPLAY_POLL_INTERVAL_S
    assert ReplayBufferAsync("async", *ARGS[1:]).poll_interval == activate.REPLAY_POLL_INTERVAL_S


def test_an_explicit_interval_is_kept(short_poll):
    assert ReplayBuffer(*ARGS, poll_interval=3.0).poll_interval == 3.0
    assert ReplayBuffer(*ARGS, 0.7).poll_interval == 0.7


def test_patching_twice_wraps_once(short_poll):
    patched = ReplayBuffer.__init__
    activate._short_replay_buffer_poll()
    assert ReplayBuffer.__init__ is patched
