"""Env adapters: 64x64x3 uint8 frames, Gymnasium's checker, time limits, action mappings, random policies."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from worldmodels.config import CollectConfig
from worldmodels.envs import adapter_for
from worldmodels.envs.doom import LEFT, NOOP, RIGHT
from worldmodels.errors import WorldModelsError


@pytest.mark.parametrize(
    "env_id",
    [
        "VizdoomTakeCover-v1",
        "CarRacing-v3",
        "worldmodels/CarRacing-v3",
        "FakePixel-v0",
        "FakePixelBox-v0",
    ],
)
def test_adapter_frames_and_checker(env_id):
    env = adapter_for(env_id).make(50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice to check the unwrapped env
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    obs, r, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (64, 64, 3) and isinstance(terminated, bool) and isinstance(truncated, bool)
    env.close()


def test_doom_step_limit_is_a_truncation_not_a_termination():
    env = adapter_for("VizdoomTakeCover-v1").make(25)
    env.reset(seed=0)
    for t in range(25):
        _, _, terminated, truncated, _ = env.step(NOOP)
        if terminated:
            pytest.skip("died within 25 steps")  # does not happen standing still at the start
    assert truncated and not terminated and t == 24


def test_doom_death_is_a_termination():
    env = adapter_for("VizdoomTakeCover-v1").make(2100)
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, terminated, truncated, _ = env.step(NOOP)
        steps += 1
        if terminated or truncated:
            break
    assert terminated and not truncated and steps < 2100


def test_fake_env_termination_passes_through():
    env = adapter_for("FakePixel-v0").make(100)
    env.reset(seed=0)
    for _ in range(12):
        _, _, terminated, truncated, _ = env.step(0)
    assert terminated and not truncated


def test_carracing_crops_the_indicator_bar():
    from worldmodels.envs.base import preprocess

    frame = np.zeros((96, 96, 3), np.uint8)
    frame[84:] = 255  # the bar
    assert preprocess(frame, 84).max() == 0
    assert preprocess(frame, None).max() > 0


def test_carracing_full_frame_keeps_the_indicator_bar():
    """env.frame `full`: the same screen resized whole, so the bar (black, with the speed and ABS bars) fills
    the frame's bottom rows; `paper` crops it; an unknown frame is refused by name."""
    from worldmodels.envs.base import preprocess

    adapter = adapter_for("worldmodels/CarRacing-v3")
    paper, full = adapter.make(20), adapter.make(20, "full")
    raw, _ = full.env.reset(seed=3)
    for _ in range(15):
        raw, *_ = full.env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert np.array_equal(full.observation(raw), preprocess(raw, None))
    assert np.array_equal(paper.observation(raw), preprocess(raw, 84))
    bottom = full.observation(raw)[-7:].astype(float)  # 12 of 96 rows -> 8 of 64
    assert bottom.mean() < 40 < paper.observation(raw)[-7:].mean()
    assert bottom.max() > 200  # the white speed bar of a car that has been given gas
    with pytest.raises(WorldModelsError, match="env.frame 'wide'"):
        adapter.make(20, "wide")
    paper.close(), full.close()


def test_doom_controller_thresholds_and_encoding():
    a = adapter_for("VizdoomTakeCover-v1")
    out = torch.tensor([[-0.9], [-0.34], [-0.33], [0.0], [0.33], [0.34], [0.9]])
    vec = a.controller_to_vector(out)
    assert vec[:, 0].tolist() == [-1, -1, 0, 0, 0, 1, 1]
    assert [a.vector_to_action(v.numpy()) for v in vec] == [
        LEFT,
        LEFT,
        NOOP,
        NOOP,
        NOOP,
        RIGHT,
        RIGHT,
    ]
    for action in (NOOP, LEFT, RIGHT):
        assert a.vector_to_action(a.encode_action(action)) == action


def test_carracing_controller_mapping():
    a = adapter_for("CarRacing-v3")
    vec = a.controller_to_vector(torch.tensor([[0.5, -1.0, -0.5], [-1.0, 1.0, 0.7]]))
    torch.testing.assert_close(vec, torch.tensor([[0.5, 0.0, 0.0], [-1.0, 1.0, 0.7]]))


def test_generic_mappings():
    d = adapter_for("FakePixel-v0")
    assert d.action_dim == 4 and d.controller_outputs == 4
    vec = d.controller_to_vector(torch.tensor([[0.1, 0.9, -0.2, 0.0]]))
    assert vec.tolist() == [[0, 1, 0, 0]] and d.vector_to_action(vec[0].numpy()) == 1
    assert d.encode_action(3).tolist() == [0, 0, 0, 1]
    b = adapter_for("FakePixelBox-v0")
    vec = b.controller_to_vector(torch.tensor([[-1.0, 1.0]]))
    assert vec.tolist() == [[-2.0, 2.0]]
    assert b.action_space.contains(b.vector_to_action(vec[0].numpy()))


def test_non_pixel_env_is_refused_by_name():
    with pytest.raises(WorldModelsError, match="CartPole-v1"):
        adapter_for("CartPole-v1")


def test_held_discrete_policy_holds_between_1_and_10_frames():
    from worldmodels.envs.actions import DiscreteCodec
    from worldmodels.envs.base import HeldRandom

    doom = adapter_for("VizdoomTakeCover-v1").random_policy(CollectConfig())
    doom.reset(np.random.default_rng(0))
    assert {doom(None) for _ in range(500)} == {0, 1, 2}
    # with many actions a repeat of the same action (which would merge two holds) is rare enough to ignore
    pol = HeldRandom(DiscreteCodec(gym.spaces.Discrete(10_000)), 1, 10)
    pol.reset(np.random.default_rng(0))
    actions = [pol(None) for _ in range(5000)]
    runs = np.diff(np.flatnonzero(np.diff(actions) != 0))
    assert runs.min() >= 1 and runs.max() <= 10
    assert 5.0 < runs.mean() < 6.0  # uniform on 1..10


def test_brownian_policy_stays_in_bounds_and_moves_smoothly():
    pol = adapter_for("CarRacing-v3").random_policy(CollectConfig())
    pol.reset(np.random.default_rng(0))
    acts = np.stack([pol(None) for _ in range(2000)])
    space = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32))
    assert all(space.contains(a) for a in acts)
    assert np.abs(np.diff(acts, axis=0)).max() < 0.9
    assert acts[:, 0].std() > 0.2


@pytest.mark.parametrize("shape", [(120, 160), (84, 96), (210, 160), (240, 320)])
def test_area_resize_is_opencv_inter_area_pixel_for_pixel(shape):
    """Doom's 160x120 and CarRacing's 84x96 crop take the integer path; 210x160 (Atari) falls back to
    OpenCV. Either way every pixel equals cv2.INTER_AREA's, on random frames and on smooth ones."""
    import cv2

    from worldmodels.envs.resize import area_resize

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, *shape, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.arange(shape[1], dtype=np.uint8)[None, :, None], (*shape, 3))
    frames = np.concatenate([noise, ramp[None], np.full((1, *shape, 3), 255, np.uint8)])
    resize = area_resize(*shape)
    assert resize.exact == (shape != (210, 160))
    want = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames])
    np.testing.assert_array_equal(resize(frames), want)


def test_preprocess_batch_matches_frame_by_frame():
    from worldmodels.envs.base import preprocess, preprocess_batch

    frames = np.random.default_rng(1).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    batch = preprocess_batch(frames, 84)
    assert batch.shape == (5, 64, 64, 3) and batch.dtype == np.uint8
    for f, b in zip(frames, batch, strict=True):
        np.testing.assert_array_equal(preprocess(f, 84), b)
    assert preprocess(None).shape == (64, 64, 3)


def test_carracing_without_box2d_names_the_projects_extra(monkeypatch):
    import sys

    from worldmodels.envs.carracing import CarRacingAdapter
    from worldmodels.errors import DISTRIBUTION

    monkeypatch.setitem(sys.modules, "Box2D", None)  # what `import Box2D` meets where it is missing
    with pytest.raises(
        WorldModelsError, match=re.escape(f"pip install '{DISTRIBUTION}[carracing]'")
    ):
        CarRacingAdapter("CarRacing-v3")


def test_vizdoom_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = adapter_for("VizdoomTakeCover-v1").make(20)
    env.reset(seed=1)
    env.step(0)
    env.close()
    assert list(tmp_path.iterdir()) == []
