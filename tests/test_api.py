"""The public Python API (`worldmodels.load`, V, M, C, the policy) and the dream as a Gymnasium env: the
README's example as written, outside the repository; the policy plays what `evaluate` plays; the dream env
plays what C's training dream plays; one-line errors for the wrong input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import worldmodels as wm
import worldmodels.envs  # noqa: F401  (registers the dream ids)
from worldmodels.episodes import eval_seeds
from worldmodels.errors import WorldModelsError
from worldmodels.models import controller as linear

from .conftest import cli, copy_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def doom() -> wm.WorldModel:
    return wm.load("doom")


def readme_python(section: str) -> str:
    """The ```python blocks of one README section, joined."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return "\n".join(
        re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)
    )


def test_the_readme_example_runs_as_written_outside_the_repository(tmp_path):
    code = readme_python("Python API")
    assert "wm.load" in code and "gym.make" in code
    (tmp_path / "example.py").write_text(code)
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "real episode" in out.stdout and "dream episode" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.py"]  # nothing left behind


# ------------------------------------------------------------------------------------------- V, M, C


def test_vision_memory_and_controller_take_one_or_a_batch(doom):
    env = doom.make_env(50)
    frame, _ = env.reset(seed=3)
    env.close()
    frames = np.stack([frame, frame[::-1]])
    z = doom.vision.encode(frames)
    assert z.shape == (2, 64) and z.dtype == np.float32
    np.testing.assert_allclose(doom.vision.encode(frame), z[0], atol=1e-5)
    assert (
        doom.vision.decode(z).shape == (2, 64, 64, 3) and doom.vision.decode(z[0]).dtype == np.uint8
    )
    a, b = (doom.vision.encode(frames, sample=True, seed=1) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    state = doom.memory.initial_state(2)
    pred, state = doom.memory.step(z, doom.action_vector([[0.9], [-0.9]]), state)
    assert (
        pred.mu.shape == (2, 64, 5)
        and pred.done.shape == (2,)
        and ((0 <= pred.done) & (pred.done <= 1)).all()
    )
    assert doom.memory.sample(pred, 1.15, seed=0).shape == (2, 64)
    # M's memory as the real-env agent advances it
    m = doom._models.mdnrnn
    with torch.no_grad():
        h, c = m.advance(torch.from_numpy(z), torch.tensor([[1.0], [-1.0]]), m.initial_state(2))
    np.testing.assert_allclose(state.h, h[0].numpy(), atol=1e-6)
    x = doom.controller.features(z, state)
    assert x.shape == (2, doom.controller.in_dim) and doom.controller.act(x).shape == (2, 1)
    assert doom.action_vector([[0.9], [0.0], [-0.9]]).tolist() == [[1.0], [0.0], [-1.0]]


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda d: d.vision.encode(np.zeros((240, 320, 3), np.uint8)), "got shape (240, 320, 3)"),
        (lambda d: d.vision.encode(np.zeros((64, 64, 3), np.float32)), "expected uint8 frames"),
        (lambda d: d.vision.decode(np.zeros(7)), "expected z of shape (N, 64)"),
        (lambda d: d.memory.step(np.zeros((2, 64)), np.zeros((1, 1)), d.memory.initial_state(2)),
         "give one of each"),
        (lambda d: d.controller.act(np.zeros(5)), "expected features of shape (N, 1088)"),
        (lambda d: d.policy().act(np.zeros((64, 64, 3), np.uint8)), "call reset(seed) first"),
        (lambda d: wm.load("no-such-agent"), "neither a shipped agent"),
        (lambda d: d.dream(observation="voxels"), "choose one of features, pixels"),
    ],
)  # fmt: skip
def test_the_wrong_input_says_what_was_expected(doom, call, needle):
    with pytest.raises(WorldModelsError) as e:
        call(doom)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_policy_given_a_raw_frame_or_too_many_frames_says_so(doom):
    policy = doom.policy()
    policy.reset(seed=1)
    with pytest.raises(WorldModelsError, match=r"got shape \(240, 320, 3\).*preprocess"):
        policy.act(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(WorldModelsError, match=r"3 frame\(s\) for envs \[0\]"):
        policy.act(np.zeros((3, 64, 64, 3), np.uint8))


# ------------------------------------------------------------------------------------------ the policy


def test_the_policy_plays_the_episodes_evaluate_plays(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    assert cli("evaluate", "--run-dir", str(run), "--episodes", "3", "--quiet").returncode == 0
    scored = json.loads((run / "eval.json").read_text())
    agent = wm.load(run)
    seeds = eval_seeds(scored["seed"], 3)
    # one env at a time, and the same three as one batch
    returns = []
    for s in seeds:
        env, policy = agent.make_env(), agent.policy()
        obs, _ = env.reset(seed=s)
        policy.reset(s)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(policy.act(obs))
            total, done = total + r, terminated or truncated
        returns.append(total)
    assert returns == scored["returns"]


def test_a_policy_of_your_own_on_the_agents_v_and_m(doom):
    seen = []

    def always_right(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return np.ones((len(x), 1), np.float32)

    policy = doom.policy(always_right)
    env = doom.make_env(10)
    obs, _ = env.reset(seed=0)
    policy.reset(0)
    from worldmodels.envs.doom import RIGHT

    assert policy.act(obs) == RIGHT and seen == [(1, doom.controller.in_dim)]
    env.close()


# --------------------------------------------------------------------------------------- the dream env


@pytest.mark.parametrize("name", ["worldmodels/DoomDream-v0", "worldmodels/CarRacingDream-v0"])
@pytest.mark.parametrize("observation", ["features", "pixels"])
def test_both_shipped_dreams_pass_the_env_checker(name, observation):
    env = gym.make(name, observation=observation, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only: infinite bounds of z and c (they are unbounded)
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.render().shape == (64, 64, 3)


def test_the_vector_dream_plays_what_cs_training_dream_plays(doom):
    dream = doom._dream_at(
        1.6, 250
    )  # C's training dream, hotter (shorter lives), at most 250 steps
    seeds = [3, 4, 5, 6]
    returns, lengths = dream.rollout(np.stack([doom.controller.params] * len(seeds)), seeds)
    env = doom.dream_vector(len(seeds), temperature=1.6, max_steps=250)
    obs, _ = env.reset(seed=seeds)
    total, steps = np.zeros(len(seeds)), np.zeros(len(seeds), int)
    first = np.ones(len(seeds), bool)  # each env's first episode only
    while first.any():
        obs, r, terminated, truncated, _ = env.step(doom.controller.act(obs))
        total[first] += r[first]
        steps[first] += 1
        first &= ~(terminated | truncated)
    np.testing.assert_array_equal(total, returns)
    np.testing.assert_array_equal(steps, lengths)
    assert lengths.min() < 250  # the done head ended some, so ends were compared too


def test_the_single_dream_env_plays_what_cs_training_dream_plays(doom):
    returns, lengths = doom._dream_at(None, 250).rollout(np.stack([doom.controller.params]), [21])
    env = gym.make("worldmodels/DoomDream-v0", max_steps=250)
    obs, _ = env.reset(seed=21)
    total, steps, done = 0.0, 0, False
    while not done:
        a = linear.act(
            torch.from_numpy(doom.controller.params)[None], torch.from_numpy(obs)[None], 1, False
        )
        obs, r, terminated, truncated, _ = env.step(a[0].numpy())
        total, steps, done = total + r, steps + 1, terminated or truncated
    assert (total, steps) == (returns[0], lengths[0])


def test_the_vector_dream_restarts_an_ended_env_on_the_next_step(doom):
    env = doom.dream_vector(4, max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, r, terminated, truncated, _ = env.step(np.zeros((4, 1), np.float32))
    assert (terminated | truncated).all() and truncated.any()
    obs, r, terminated, truncated, _ = env.step(np.zeros((4, 1), np.float32))
    assert (r == 0).all() and not (terminated | truncated).any()  # the autoreset step
    _, r, _, _, _ = env.step(np.zeros((4, 1), np.float32))
    assert (r == 1).all()  # Doom's dream scores +1 a step alive


def test_the_dream_ids_take_an_agent_and_a_temperature_and_make_vec(trained_run):
    env = gym.make("worldmodels/Dream-v0", agent=str(trained_run), temperature=2.0, max_steps=7)
    assert env.unwrapped.dream.spec.temperature == 2.0
    obs, _ = env.reset(seed=1)
    vec = gym.make_vec("worldmodels/Dream-v0", num_envs=3, vectorization_mode="vector_entry_point",
                       agent=str(trained_run))  # fmt: skip
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, env.observation_space.shape[0])
