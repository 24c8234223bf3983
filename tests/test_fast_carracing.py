"""`worldmodels/CarRacing-v3` gives gymnasium's CarRacing-v3 array for array: observations, rewards, ends and
infos, for random (Brownian) and track-following driving, fresh envs and envs reused across resets."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import worldmodels.envs  # noqa: F401  (registers worldmodels/CarRacing-v3)
from worldmodels.envs.fast_carracing import rotate_xy

pytestmark = pytest.mark.slow


def brownian(seed: int, n: int = 1000):
    rng = np.random.default_rng(seed)
    a = np.zeros(3, np.float32)

    def act(env, t):
        nonlocal a
        a = np.clip(a + rng.standard_normal(3).astype(np.float32) * 0.14, [-1, 0, 0], [1, 1, 1])
        return a.astype(np.float32)

    return act


def follow_track(env, t):
    """Steer towards the track a few tiles ahead: the car stays on the road and tiles change colour."""
    u = env.unwrapped
    x, y = u.car.hull.position
    track = np.array([(tx, ty) for _, _, tx, ty in u.track])
    i = int(np.argmin(((track - (x, y)) ** 2).sum(1)))
    tx, ty = track[(i + 4) % len(track)]
    heading = u.car.hull.angle + math.pi / 2
    err = (math.atan2(ty - y, tx - x) - heading + math.pi) % (2 * math.pi) - math.pi
    return np.array([np.clip(-2.0 * err, -1, 1), 0.3 if t % 3 else 0.0, 0.0], np.float32)


def episode(env, seed, policy, options=None):
    """Every array the env returns over one episode, with the actions the policy chose (from `env`)."""
    obs, info = env.reset(seed=seed, options=options)
    out = [("reset", obs, info)]
    for t in range(2000):
        a = policy(env, t)
        obs, r, terminated, truncated, info = env.step(a)
        out.append((a, obs, r, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


def replay(env, seed, recorded, options=None):
    obs, info = env.reset(seed=seed, options=options)
    out = [("reset", obs, info)]
    for a, *_ in recorded[1:]:
        obs, r, terminated, truncated, info = env.step(a)
        out.append((a, obs, r, terminated, truncated, info))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, np.ndarray):
                assert u.dtype == v.dtype and np.array_equal(u, v), f"step {t}"
            else:
                assert type(u) is type(v) and u == v, f"step {t}: {u!r} != {v!r}"


@pytest.mark.parametrize(
    "seed, policy, steps",
    [(11, "follow", 1000), (3, "brownian", 400), (29, "brownian", 250), (47, "follow", 250)],
)
def test_fresh_envs_give_identical_episodes(seed, policy, steps):
    theirs = gym.make("CarRacing-v3", max_episode_steps=steps)
    ours = gym.make("worldmodels/CarRacing-v3", max_episode_steps=steps)
    act = brownian(seed) if policy == "brownian" else follow_track
    want = episode(theirs, seed, act)
    got = replay(ours, seed, want)
    assert_same(got, want)
    if policy == "follow":
        assert (
            sum(step[2] for step in want[1:]) > 50
        )  # it drove along the road, tiles changed colour


def test_reused_env_across_resets_and_options():
    theirs = gym.make("CarRacing-v3", max_episode_steps=150, domain_randomize=True)
    ours = gym.make("worldmodels/CarRacing-v3", max_episode_steps=150, domain_randomize=True)
    for k, seed in enumerate([5, 6, 5, 123, 7, 8]):
        options = {"randomize": k % 2 == 0}
        want = episode(theirs, seed, brownian(seed) if k % 2 else follow_track, options)
        assert_same(replay(ours, seed, want, options), want)


def test_discrete_actions_and_rgb_array_render():
    theirs = gym.make(
        "CarRacing-v3", continuous=False, render_mode="rgb_array", max_episode_steps=120
    )
    ours = gym.make("worldmodels/CarRacing-v3", continuous=False, render_mode="rgb_array",
                    max_episode_steps=120)  # fmt: skip
    rng = np.random.default_rng(0)
    actions = [int(a) for a in rng.integers(0, 5, 120)]
    for env in (theirs, ours):
        env.reset(seed=9)
    for a in actions:
        x, y = theirs.step(a), ours.step(a)
        assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]
        assert np.array_equal(theirs.render(), ours.render())


def test_rotation_matches_pygame_vector2_exactly():
    import pygame

    rng = np.random.default_rng(0)
    pts = rng.normal(0, 300, (64, 2))
    angles = list(rng.uniform(-20, 20, 50)) + [0.0, math.pi / 2, -math.pi, 3 * math.pi / 2 + 1e-7]
    for angle in angles:
        want = np.array([tuple(pygame.math.Vector2(tuple(p)).rotate_rad(angle)) for p in pts])
        assert np.array_equal(np.stack(rotate_xy(pts[:, 0], pts[:, 1], angle), -1), want), angle
