"""Typed, frozen configuration: one dataclass per stage, presets, and dotted overrides.

A run's resolved config is written to ``RUN_DIR/config.json`` before any work starts; later stages read it
from there. Every field can be overridden from the command line as ``--section.field VALUE``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import textwrap
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from worldmodels.errors import WorldModelsError

FRAMES = ("paper", "full")
"""The values of env.frame."""


@dataclass(frozen=True)
class EnvConfig:
    id: str = "VizdoomTakeCover-v1"
    """Gymnasium id of the real environment (the adapter is chosen by it; any HxWx3 pixel env works)."""
    max_steps: int = 2100
    """Step limit of a real episode; reaching it is a truncation, never a termination."""
    frame: str = "paper"
    """What of the screen V sees, resized to 64x64: `paper`, the paper's crop (CarRacing drops the indicator
    bar, its bottom 12 rows; other envs keep everything), or `full`, the whole screen (CarRacing keeps the
    bar: speed, the four wheels' ABS sensors, steering and gyroscope)."""


@dataclass(frozen=True)
class ParallelConfig:
    backend: str = "local"
    """Where real-env work runs: `local` (worker processes) or `ray` (Ray tasks)."""
    workers: int = 2
    """Parallel workers for real-env work (collection, real-env fitness, evaluation)."""
    ray_address: str = ""
    """Address of an existing Ray cluster; empty starts a local Ray with `workers` CPUs."""
    retries: int = 2
    """How often a task whose worker died is retried before the run stops with an error."""
    envs: int = 16
    """Real envs one worker plays at once with C (evaluation, real-env fitness, iterative training's
    collection): V, M and C run on the batch of their frames. The episodes do not depend on it."""
    encode_thread: str = "auto"
    """Collection: resize and compress frames on a second thread in each worker while the game runs (`on`),
    in the game loop (`off`), or `auto`: on when local workers leave a core free (one worker on 2 cores:
    about 1.5x faster), off when every core has a worker (the thread would only compete with the games)."""


@dataclass(frozen=True)
class CollectConfig:
    episodes: int = 10_000
    """Number of random-policy episodes to collect (the paper: 10,000)."""
    hold_min: int = 1
    """Discrete / generic random policy: an action is held for at least this many frames."""
    hold_max: int = 10
    """Discrete / generic random policy: an action is held for at most this many frames."""
    brownian_dt: float = 1 / 50
    """CarRacing random policy: Brownian-motion step size, a' = clip(a + sqrt(dt) * N(0, 1))."""


@dataclass(frozen=True)
class VAEConfig:
    z_dim: int = 64
    """Size of the latent z (the paper: 32 for CarRacing, 64 for Doom)."""
    epochs: int = 1
    """Passes over the training frames (the paper: 1; the reference code: 10)."""
    max_updates: int = 0
    """Stop after this many updates even mid-epoch (0: no cap). Lets a CPU preset buy a fixed budget."""
    batch_size: int = 100
    """Images per update (the paper: 100)."""
    lr: float = 1e-4
    """Adam learning rate (the paper: 1e-4)."""
    indicator_weight: float = 1.0
    """Weight of V's squared error on the env's indicator pixels, where the frame shows them (CarRacing with
    env.frame `full`: the speed and ABS bars, rows 56-63 and columns 7-17 of the 64x64 frame, which plain V
    paints as an average bar whatever the speed). 1: the paper's loss."""
    lr_final: float = 0.0
    """Cosine-decay the learning rate from lr to this over the training's updates (0: constant lr, the
    paper's)."""
    kl_tolerance: float = 0.5
    """KL floor per image, in nats per latent dimension: loss uses max(KL, kl_tolerance * z_dim)."""
    shuffle_episodes: int = 32
    """Episodes mixed in one shuffle buffer (two are in memory: one in use, one being read); memory is
    bounded by this, not by the data set size."""
    amp: bool = True
    """bf16 autocast (and channels_last on CPU) where the device runs bf16 natively (a CPU with AVX512-BF16 or
    AMX, a GPU): about 1.6x faster with AMX. Elsewhere V runs in fp32 (emulated bf16 trained 34x slower)."""
    checkpoint_every_s: float = 120.0
    """Seconds between checkpoints (one is also written at the end)."""


@dataclass(frozen=True)
class MDNRNNConfig:
    hidden: int = 512
    """LSTM units (the paper: 256 CarRacing, 512 Doom)."""
    n_mixtures: int = 5
    """Gaussian components per latent dimension (the paper: 5), or of the whole z with joint_mixture."""
    joint_mixture: bool = False
    """One mixture over the whole z (each component a diagonal Gaussian over all dimensions, one weight
    vector) instead of the paper's independent mixture per dimension (false). A sample then picks one
    component for every dimension, so the dream's z is one coherent scene rather than each dimension
    drawn from its own component; more components (n_mixtures) make up for the shared weights."""
    seq_len: int = 500
    """Longest training sequence; longer episodes are cut into pieces (the paper: 1000 CarRacing, 500 Doom)."""
    batch_size: int = 100
    """Sequences per update (the paper: 100)."""
    lr: float = 1e-3
    """Adam learning rate (the paper: 1e-3)."""
    lr_final: float = 0.0
    """Cosine-decay the learning rate from lr to this over the training's updates (0: constant lr, the
    paper's). Each round of iterative training decays again over its own updates."""
    grad_clip: float = 1.0
    """Gradients are clipped by value to [-grad_clip, grad_clip] (the paper: 1.0)."""
    epochs: int = 20
    """Passes over the training episodes; z is resampled from (mu, logvar) on every pass."""
    max_updates: int = 0
    """Stop after this many updates even mid-epoch (0: no cap)."""
    done_head: bool = True
    """Predict episode termination (the paper's Doom M); trained with sigmoid cross-entropy."""
    done_pos_weight: float = 10.0
    """Weight of positive (terminal) steps in the done loss (the reference code: 10)."""
    done_refit_epochs: int = 0
    """After M's training, fit the done head again on M's frozen memory: a fresh logistic regression on h
    (the same weighted loss), kept at its best held-out done loss over at most this many passes over the
    training episodes (stopping after 2 without a better one), and only if it beats the jointly trained
    head there (0: the jointly trained head, the paper's). The done head overfits long before the z head
    stops improving; each pass costs about one epoch of M's forward pass."""
    reward_head: bool = False
    """Predict the reward (not in the paper): lets envs whose reward is not +1 per step train in the dream."""
    dropout: float = 0.0
    """Dropout rate in M's training (0: the paper's M): each training sequence draws one mask for the
    LSTM's input [z, a] and one for the h it feeds back to its next step, held for all its steps
    (variational dropout, as in Wellmer and Kwok's "Dropout's Dream Land", 2021). The real-env agent uses
    the whole M; the dream draws a mask per rollout (controller.dream_dropout). The LSTM then runs step by
    step: about 1.5x the fused LSTM's own time (batch 32 x 500 steps, H 512, 2 cores); a whole doom-cpu
    update measured 0.94 s alone, near the fused one's. On a GPU it costs far more: 8.6x (fp32) to 9.6x
    (bf16) the fused LSTM's training time on an H200 (benchmarks/mdnrnn_throughput.py --device cuda)."""
    action_input: str = "env"
    """What M reads as the action of a step: `env`, the action the env played, as M's action vector (Doom:
    -1, 0 or +1 after C's output is thresholded at +-1/3); `controller`, C's own output in [-1, 1] where C
    acted (the reference code's Doom M), the played action's vector where the random policy did (random
    episodes, exploration). Needs C's outputs to be M's action vector (Doom: one number)."""
    members: int = 1
    """M as an ensemble of this many members (1: the paper's single M). Each starts from its own
    initialisation and trains on its own bootstrap weights of the sequences (Poisson(1) per sequence and
    member); the real-env agent reads member 0's memory, the dream samples from the members (see
    controller.member_choice and controller.disagreement_penalty). Costs about K times M's training."""
    reward_over_weight: float = 1.0
    """Weight of the reward head's squared error where it predicts more than the real reward (1: plain
    squared error). Above 1 M is taught caution: C, trained on M's predicted return, exploits optimism."""
    self_feed: float = 0.0
    """Share of the steps in M's training whose input z is M's own sample of it instead of the real
    frame's: a first pass over the real z (no gradient) predicts every next z, sampled at tau 1, and the
    trained pass reads those at the chosen steps, so M learns to go on from frames it imagined, as it
    must in the dream. The targets stay the real z; validation stays teacher-forced. M's training took
    1.15-1.35x as long on a 2-core AVX2 CPU (benchmarks/mdnrnn_throughput.py, its results'
    mdnrnn_throughput_avx2.json). 0: the paper's teacher forcing."""
    shuffle_episodes: int = 256
    """Episodes mixed in one shuffle buffer, also the pool sequences are bucketed by length from."""
    amp: bool = True
    """bf16 autocast for the LSTM where the device runs bf16 natively (a CPU with AVX512-BF16 or AMX, a GPU):
    several times faster with AMX. Elsewhere M runs in fp32."""
    checkpoint_every_s: float = 120.0
    """Seconds between checkpoints (one is also written at the end)."""


@dataclass(frozen=True)
class ControllerConfig:
    where: str = "dream"
    """Where candidates are scored: `dream` (inside M, batched) or `real` (the real env, parallel)."""
    temperature: float = 1.15
    """Dream temperature tau (the paper's Doom agent: 1.15)."""
    population: int = 64
    """CMA-ES population size (the paper: 64)."""
    sigma0: float = 0.1
    """CMA-ES initial step size; x0 = 0 (the paper: 0.1)."""
    trials: int = 16
    """Rollouts per candidate, each with its own seed; fitness is their mean (the paper: 16)."""
    generations: int = 300
    """CMA-ES generations."""
    eval_every: int = 25
    """Every this many generations the current mean is scored over `eval_rollouts` rollouts (paper: 25)."""
    eval_rollouts: int = 1024
    """Rollouts of the periodic evaluation of the current mean (the paper: 1024)."""
    select_real: int = 0
    """With where `dream`: real episodes that also score the search's mean at each periodic evaluation
    (the same episodes every time), and C is the mean that scored most there, not in the dream (0: the
    dream's evaluation chooses, the paper's). C still trains only in the dream; real play only picks which
    of its means is kept, where a longer search keeps raising the dream score but not the real one. Costs
    these episodes every `eval_every` generations."""
    max_steps: int = 2100
    """Step limit of a dream rollout (real rollouts use env.max_steps)."""
    use_cell: bool = True
    """Feed the LSTM cell state c to C besides z and h (the paper's Doom controller: [z, c, h])."""
    bias: bool = False
    """Give C a bias (the paper: CarRacing yes, Doom no)."""
    max_gas: float = 1.0
    """CarRacing: the most gas C can give, gas = max_gas (a1 + 1) / 2 (1: the paper's (a1 + 1) / 2), in the
    dream (M reads the gas the car gets) and on the road alike. The Cs that cheat a CarRacing M drive
    faster than the ones that drive well, leaving the road in bends where M keeps them on it; a cap takes
    that speed out of C's reach (a person driving with `play` gets C's pedal; the random policy keeps the
    whole one)."""
    sample_done: bool = False
    """Sample done ~ Bernoulli(p) in the dream instead of the paper's threshold p > 0.5."""
    reproject_z: bool = False
    """Pass every z the dream samples through V (decode, then the encoder's mean), so the dream stays on
    the frames V can produce: M draws each of z's dimensions from its own mixture, and the combination
    need not be any frame (false: the paper's dream). Costs a V decode and encode per dream step."""
    calibrate_done: bool = False
    """Read M's done probability without the bias of its weighted loss: a head trained with positive weight
    w over-states the odds of death w times, so its logit is lowered by ln(mdnrnn.done_pos_weight) before
    the threshold or the sampling (false: the paper's and reference code's raw p)."""
    member_choice: str = "random"
    """With an ensemble M: which member's prediction the dream follows at each step, `random` (drawn per
    step and rollout, so C cannot rely on one member's mistakes), `rollout` (one member drawn per rollout
    and followed throughout: C must do well in every member's dream, PETS's TS-inf) or `first` (member 0
    only)."""
    disagreement_penalty: float = 0.0
    """With an ensemble M: each dream step's reward minus this times the members' disagreement (the std
    across members of their expected next z, averaged over its dimensions): C pays where M is unsure."""
    dream_starts: str = "first"
    """Where C's training dream starts: `first`, the first frames of real episodes (the paper); `any`, real
    frames at any step of the run's episodes (drawn uniformly over their steps), each with M's memory of
    the episode up to it (M fed the real frames and actions), so C also trains in the late-game states
    that long real episodes reach and a dream from the first frame may never imagine faithfully;
    `failures`, first frames and frames shortly before places where C lost ground in its own real
    episodes (failure_share, failure_stretch, failure_lead), so C trains where it went wrong."""
    dream_start_states: int = 4096
    """With dream_starts `any`: how many (frame, memory) start states are drawn."""
    failure_share: float = 0.5
    """With dream_starts `failures`: the share of start states taken shortly before places where C lost
    ground in the episodes it played in iterative training's rounds; the rest are every episode's first
    frame (the paper's starts). Before any round has played, first frames only."""
    failure_stretch: int = 20
    """With dream_starts `failures`: steps in a row without a positive reward that make a place where C
    lost ground (CarRacing: no new tile, the car off the track or stopped); an episode that ended
    terminated (a death) is one at its last step."""
    failure_lead: int = 20
    """With dream_starts `failures`: how many steps before such a place the dream starts, with M's memory
    of the real episode up to there."""
    dream_dropout: float = -1.0
    """Dropout rate of the dream: every rollout draws its own masks of M's input and fed-back h and keeps
    them for all its steps, so C trains across many sub-networks of M ("Dropout's Dream Land"); -1: M's
    training rate (mdnrnn.dropout), 0: the whole M (the paper's dream)."""


@dataclass(frozen=True)
class IterateConfig:
    rounds: int = 0
    """Rounds of the paper's iterative training after the first C: collect real episodes with C (plus
    exploration), train M further on all episodes so far, train a new C in the new dream (0: none, the
    paper's one-pass Doom experiment)."""
    episodes: int = 500
    """Real episodes collected with the current C (and exploration) in each round."""
    explore: float = 0.05
    """Per-step chance that the collecting agent hands over to the random policy for 1-10 frames."""
    mdnrnn_updates: int = 600
    """M's updates in each round, continuing from the previous M, over every episode collected so far."""
    generations: int = 0
    """C's CMA-ES generations in each round (0: controller.generations)."""
    warm_start: bool = False
    """Start each round's CMA-ES from the previous round's C instead of x0 = 0 (the paper's x0): the new C
    need not learn again what the last one knew, so a round may need fewer generations."""
    eval_episodes: int = 0
    """Real episodes that score each round's C (rounds/R/eval.json), on seeds of their own (derived from the
    run's seed, apart from any `evaluate --seed`): for the record, or for `iterate.choose best`."""
    choose: str = "last"
    """Which round's C (with its M) is the run's agent: `last` (the paper), or `best`, the round, the first
    C (round 0) included, whose C scored most over `iterate.eval_episodes` real episodes. A later round's C
    can be worse than an earlier one's; real episodes then only choose, C still trains in the dream. The
    agent's dream temperature is its round's (final_temperature only for the last round's C)."""
    final_temperature: float = 0.0
    """Dream temperature of the last round's C, the run's agent (0: controller.temperature). Earlier rounds'
    C train at controller.temperature. `evaluate --where dream` scores the agent at this tau."""
    final_generations: int = 0
    """CMA-ES generations of the last round's C, the run's agent (0: as the other rounds'): a longer last
    search where the agent's C was still improving when it stopped."""
    final_trials: int = 0
    """Dream rollouts per candidate for the last round's C (0: controller.trials): a less noisy fitness
    for the C that becomes the agent."""
    searches: int = 1
    """Independent CMA-ES searches of every round's C (rounds 1 on; round 0's first C is one search), each
    scored over the round's `iterate.eval_episodes` real episodes, the best becoming the round's C as with
    `final_searches` (which, above 1, sets the last round's instead): so that a round whose single search
    cheats M does not collect the next round's episodes. Costs a C search and a check a round per extra
    search (1: one search, the paper's)."""
    final_searches: int = 1
    """Independent CMA-ES searches of the last round's C, search j with the run's seed + j (its CMA-ES
    draws, dream rollouts and starts; search 0 is the one a single search makes), each scored over the
    round's `iterate.eval_episodes` real episodes (the same ones for all); the best becomes the agent
    (rounds/R/searches.json). Searches that differ only in their seed end far apart in the real env and
    the dream's own score does not tell which are good; real episodes then only choose, C still trains
    in the dream (1: one search, the paper's)."""
    final_vote: int = 1
    """The agent as a committee of the last round's `final_vote` searches that checked best (odd, at most
    the round's searches): each step every member acts on the same [z, h] and the car gets the median of
    their actions, output by output (`models.controller`). The committee's own check on the round's real
    episodes is the round's score. A median needs no agreement on when to steer, and one member that
    cheats M is outvoted (1: the best search alone)."""


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 100
    """Real-env episodes of `evaluate` (the paper: 100)."""
    seed: int = 1234
    """Seed of the evaluation's fixed seed list (apart from the training seed)."""


@dataclass(frozen=True)
class Config:
    preset: str = "doom"
    """Name of the preset this config started from."""
    seed: int = 0
    """The one seed every episode, worker, split and candidate seed derives from."""
    device: str = "auto"
    """Torch device for V's and M's training and the dream: `auto` (CUDA when available), `cpu`, `cuda`,
    `cuda:N` or `mps`. The real-env agent runs V, M and C on the CPU (see docs)."""
    val_fraction: float = 0.05
    """Share of episodes held out (a seeded per-episode split) for V's and M's validation losses."""
    tensorboard: bool = False
    """Also write TensorBoard event files under RUN_DIR/tb."""
    env: EnvConfig = field(default_factory=EnvConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    mdnrnn: MDNRNNConfig = field(default_factory=MDNRNNConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    iterate: IterateConfig = field(default_factory=IterateConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------- presets


def _doom() -> Config:
    return Config(preset="doom")


def _carracing() -> Config:
    # worldmodels/CarRacing-v3 is gymnasium's CarRacing-v3 array for array, about 3x faster (envs/
    # fast_carracing.py); `--env CarRacing-v3` gives gymnasium's own.
    return Config(
        preset="carracing",
        env=EnvConfig(id="worldmodels/CarRacing-v3", max_steps=1000),
        vae=VAEConfig(z_dim=32),
        mdnrnn=MDNRNNConfig(hidden=256, seq_len=1000, done_head=False),
        controller=ControllerConfig(
            where="real", temperature=1.0, max_steps=1000, use_cell=False, bias=True,
            generations=1800,
        ),
    )  # fmt: skip


def _carracing_cpu() -> Config:
    # CarRacing on 2 CPU cores in at most 2.5 hours, the paper's model sizes (z 32, M 256 units, C 867
    # parameters), C trained only in M's dream: M predicts the reward (and the real ends), and rounds of
    # iterative training show M what C's own driving leads to. See docs/results.md.
    return Config(
        preset="carracing-cpu",
        env=EnvConfig(id="worldmodels/CarRacing-v3", max_steps=1000),
        collect=CollectConfig(episodes=400),
        vae=VAEConfig(z_dim=32, max_updates=2000, lr=1e-3),
        mdnrnn=MDNRNNConfig(hidden=256, seq_len=1000, batch_size=16, epochs=1000, max_updates=1500,
                            reward_head=True, done_head=True),
        controller=ControllerConfig(
            where="dream", temperature=1.0, max_steps=1000, use_cell=False, bias=True,
            population=64, trials=8, generations=40, eval_every=10, eval_rollouts=256,
        ),
        iterate=IterateConfig(rounds=6, episodes=100, explore=0.05, mdnrnn_updates=600,
                              eval_episodes=16, final_temperature=1.15),
        evaluate=EvalConfig(episodes=100),
    )  # fmt: skip


def _demo() -> Config:
    # The embedded default: the paper's full-size V, M and C on DoomTakeCover, budgets for 2 CPU cores and
    # about 17 minutes. M's training is what the budget buys: small batches give it many updates. V's lr is
    # 10x the paper's so its short training still sees fireballs. The dream runs hotter than the paper's 1.15:
    # a briefly trained M is easy to cheat at 1.15 (its C held "right" and scored below random), and the
    # paper's own sweep shows that a hotter dream is harder to exploit. See docs/results.md.
    return Config(
        preset="demo",
        collect=CollectConfig(episodes=800),
        vae=VAEConfig(epochs=1, max_updates=800, lr=1e-3, shuffle_episodes=64),
        mdnrnn=MDNRNNConfig(epochs=1000, max_updates=900, batch_size=32),
        controller=ControllerConfig(
            temperature=1.5, population=64, trials=8, generations=12, eval_every=4, eval_rollouts=256,
            max_steps=1000,
        ),
        evaluate=EvalConfig(episodes=100),
    )  # fmt: skip


def _doom_cpu() -> Config:
    # DoomTakeCover on 2 CPU cores in about 2.5 hours, the paper's model sizes. A fifth of the paper's
    # data; V and M trained briefly (small M batches buy updates); C trained only in the dream at the paper's
    # tau 1.15, with 8 trials per candidate instead of 16; then three rounds of the paper's iterative
    # training, because one pass over random play let C cheat M (it held "right", see docs/results.md).
    # The agent is the round whose C scored most over 32 real episodes of its own seeds: a last round's C
    # has held one direction again where an earlier one dodged (179.0 against 784.8 over 200 episodes).
    return Config(
        preset="doom-cpu",
        collect=CollectConfig(episodes=2000),
        vae=VAEConfig(epochs=1, max_updates=3000, lr=1e-3),
        mdnrnn=MDNRNNConfig(max_updates=1800, batch_size=32),
        controller=ControllerConfig(
            population=64, trials=8, generations=20, eval_every=5, eval_rollouts=256
        ),
        iterate=IterateConfig(rounds=3, episodes=500, explore=0.05, mdnrnn_updates=600,
                              eval_episodes=32, choose="best"),
    )  # fmt: skip


def _debug() -> Config:
    # Seconds, for tests: tiny budgets, small models, short episodes.
    return Config(
        preset="debug",
        env=EnvConfig(max_steps=60),
        parallel=ParallelConfig(workers=2),
        collect=CollectConfig(episodes=6),
        vae=VAEConfig(z_dim=8, epochs=1, batch_size=16, shuffle_episodes=4, amp=False),
        mdnrnn=MDNRNNConfig(
            hidden=16, seq_len=32, batch_size=4, epochs=2, shuffle_episodes=4, amp=False
        ),
        controller=ControllerConfig(
            population=6, trials=2, generations=3, eval_every=2, eval_rollouts=8, max_steps=40
        ),
        # 6 episodes a round, as collect: with the default 500 a debug round took minutes
        iterate=IterateConfig(episodes=6, mdnrnn_updates=20),
        evaluate=EvalConfig(episodes=4),
        val_fraction=0.2,
    )


PRESETS: dict[str, typing.Callable[[], Config]] = {
    "debug": _debug,
    "demo": _demo,
    "doom": _doom,
    "doom-cpu": _doom_cpu,
    "carracing": _carracing,
    "carracing-cpu": _carracing_cpu,
}


def preset(name: str) -> Config:
    """Return the named preset, or raise a one-line error listing the known ones."""
    if name not in PRESETS:
        raise WorldModelsError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


# ------------------------------------------------------------------------------ overrides and (de)serialising


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source (for --help)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return docs


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def leaf_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every overridable field as (dotted name, type, doc)."""
    out = []
    docs = field_docs(cls)
    for f in fields(cls):
        tp = _field_type(cls, f.name)
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp, docs.get(f.name, "")))
    return out


def parse_value(name: str, tp: Any, text: str) -> Any:
    """Turn a command-line string into the field's type, or raise a one-line error naming the flag."""
    try:
        if tp is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        return str(text)
    except ValueError:
        raise WorldModelsError(
            f"--{name}: expected {getattr(tp, '__name__', tp)}, got {text!r}"
        ) from None


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return `cfg` with dotted-name fields replaced, e.g. {"vae.epochs": 2}."""
    for name, value in overrides.items():
        parts = name.split(".")
        cfg = _replace_path(cfg, parts, value, name)
    validate(cfg)
    return cfg


def _replace_path(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    names = {f.name for f in fields(obj)}
    if parts[0] not in names:
        raise WorldModelsError(f"unknown setting {full!r}")
    if len(parts) == 1:
        return replace(obj, **{parts[0]: value})
    return replace(obj, **{parts[0]: _replace_path(getattr(obj, parts[0]), parts[1:], value, full)})


def from_dict(data: dict[str, Any], cls: type = Config, where: str = "config") -> Any:
    """Rebuild a config from its JSON form; unknown or mistyped keys give a one-line error."""
    if not isinstance(data, dict):
        raise WorldModelsError(f"{where}: expected an object")
    kwargs = {}
    known = {f.name for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise WorldModelsError(f"{where}: unknown setting {key!r}")
        tp = _field_type(cls, key)
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(value, tp, where)
        elif tp is float and isinstance(value, int) and not isinstance(value, bool):
            kwargs[key] = float(value)
        elif not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise WorldModelsError(f"{where}: {key} should be {tp.__name__}, got {value!r}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def agent_temperature(cfg: Config, round_: int | None = None) -> float:
    """The dream temperature round `round_`'s C trained at (None: the last round's, or the first C's
    without iterative training): iterate.final_temperature for the last round where set, else
    controller.temperature, the one the rounds before the last train at."""
    final, rounds = cfg.iterate.final_temperature, cfg.iterate.rounds
    last = round_ is None or round_ == rounds
    return final if rounds > 0 and final > 0 and last else cfg.controller.temperature


def round_config(cfg: Config, round_: int | None = None) -> Config:
    """The config whose dream round `round_`'s C trained in (None: the last round's): controller.temperature
    is that C's tau. With the index of RunDir.agent_round, the agent's own dream (`iterate.choose best` may
    keep an earlier round's C, trained at controller.temperature)."""
    return with_overrides(cfg, {"controller.temperature": agent_temperature(cfg, round_)})


def validate(cfg: Config) -> None:
    """Reject values no stage could run with, naming the setting."""
    it = cfg.iterate
    last_searches = it.final_searches if it.final_searches > 1 else it.searches
    checks = [
        (cfg.parallel.backend in ("local", "ray"), "parallel.backend must be 'local' or 'ray'"),
        (cfg.parallel.workers >= 1, "parallel.workers must be >= 1"),
        (cfg.parallel.envs >= 1, "parallel.envs must be >= 1"),
        (
            cfg.parallel.encode_thread in ("auto", "on", "off"),
            "parallel.encode_thread must be 'auto', 'on' or 'off'",
        ),
        (cfg.collect.episodes >= 1, "collect.episodes must be >= 1"),
        (
            1 <= cfg.collect.hold_min <= cfg.collect.hold_max,
            "need 1 <= collect.hold_min <= hold_max",
        ),
        (cfg.parallel.retries >= 0, "parallel.retries must be >= 0"),
        (cfg.env.max_steps >= 1, "env.max_steps must be >= 1"),
        (cfg.env.frame in FRAMES, f"env.frame must be one of {', '.join(FRAMES)}"),
        (cfg.collect.brownian_dt > 0, "collect.brownian_dt must be > 0"),
        (cfg.vae.epochs >= 1, "vae.epochs must be >= 1"),
        (cfg.vae.max_updates >= 0, "vae.max_updates must be >= 0 (0: no cap)"),
        (cfg.vae.lr > 0, "vae.lr must be > 0"),
        (cfg.vae.indicator_weight > 0, "vae.indicator_weight must be > 0"),
        (
            cfg.vae.indicator_weight == 1 or cfg.env.frame == "full",
            "vae.indicator_weight needs env.frame full (the paper's frame shows no indicators)",
        ),
        (cfg.vae.kl_tolerance >= 0, "vae.kl_tolerance must be >= 0"),
        (cfg.vae.shuffle_episodes >= 1, "vae.shuffle_episodes must be >= 1"),
        (cfg.vae.checkpoint_every_s >= 0, "vae.checkpoint_every_s must be >= 0"),
        (cfg.mdnrnn.hidden >= 1, "mdnrnn.hidden must be >= 1"),
        (cfg.mdnrnn.n_mixtures >= 1, "mdnrnn.n_mixtures must be >= 1"),
        (cfg.mdnrnn.lr > 0, "mdnrnn.lr must be > 0"),
        (cfg.mdnrnn.grad_clip > 0, "mdnrnn.grad_clip must be > 0"),
        (cfg.mdnrnn.epochs >= 1, "mdnrnn.epochs must be >= 1"),
        (cfg.mdnrnn.max_updates >= 0, "mdnrnn.max_updates must be >= 0 (0: no cap)"),
        (cfg.mdnrnn.shuffle_episodes >= 1, "mdnrnn.shuffle_episodes must be >= 1"),
        (cfg.mdnrnn.checkpoint_every_s >= 0, "mdnrnn.checkpoint_every_s must be >= 0"),
        (cfg.controller.sigma0 > 0, "controller.sigma0 must be > 0"),
        (cfg.controller.generations >= 1, "controller.generations must be >= 1"),
        (cfg.controller.eval_every >= 1, "controller.eval_every must be >= 1"),
        (cfg.controller.eval_rollouts >= 1, "controller.eval_rollouts must be >= 1"),
        (cfg.controller.max_steps >= 1, "controller.max_steps must be >= 1"),
        (
            cfg.iterate.generations >= 0,
            "iterate.generations must be >= 0 (0: controller.generations)",
        ),
        (cfg.iterate.eval_episodes >= 0, "iterate.eval_episodes must be >= 0"),
        (cfg.evaluate.episodes >= 1, "evaluate.episodes must be >= 1"),
        (cfg.vae.z_dim >= 1, "vae.z_dim must be >= 1"),
        (cfg.vae.batch_size >= 1, "vae.batch_size must be >= 1"),
        (cfg.mdnrnn.batch_size >= 1, "mdnrnn.batch_size must be >= 1"),
        (cfg.mdnrnn.seq_len >= 2, "mdnrnn.seq_len must be >= 2"),
        (cfg.mdnrnn.members >= 1, "mdnrnn.members must be >= 1"),
        (
            cfg.mdnrnn.action_input in ("env", "controller"),
            "mdnrnn.action_input must be 'env' or 'controller'",
        ),
        (0 <= cfg.mdnrnn.dropout < 1, "mdnrnn.dropout must be in [0, 1)"),
        (cfg.mdnrnn.done_refit_epochs >= 0, "mdnrnn.done_refit_epochs must be >= 0 (0: off)"),
        (
            cfg.mdnrnn.done_refit_epochs == 0 or (cfg.mdnrnn.done_head and cfg.mdnrnn.members == 1),
            "mdnrnn.done_refit_epochs needs a done head and one M (mdnrnn.members 1)",
        ),
        (
            cfg.controller.dream_dropout == -1 or 0 <= cfg.controller.dream_dropout < 1,
            "controller.dream_dropout must be in [0, 1), or -1 (mdnrnn.dropout)",
        ),
        (
            cfg.mdnrnn.members == 1
            or (cfg.mdnrnn.dropout == 0 and cfg.controller.dream_dropout <= 0),
            "dropout needs one M (mdnrnn.members 1)",
        ),
        (cfg.mdnrnn.reward_over_weight > 0, "mdnrnn.reward_over_weight must be > 0"),
        (0 <= cfg.mdnrnn.self_feed <= 1, "mdnrnn.self_feed must be in [0, 1]"),
        (cfg.mdnrnn.done_pos_weight > 0, "mdnrnn.done_pos_weight must be > 0"),
        (0 <= cfg.vae.lr_final <= cfg.vae.lr, "need 0 <= vae.lr_final <= vae.lr"),
        (0 <= cfg.mdnrnn.lr_final <= cfg.mdnrnn.lr, "need 0 <= mdnrnn.lr_final <= mdnrnn.lr"),
        (
            cfg.controller.member_choice in ("random", "rollout", "first"),
            "controller.member_choice must be 'random', 'rollout' or 'first'",
        ),
        (cfg.controller.disagreement_penalty >= 0, "controller.disagreement_penalty must be >= 0"),
        (
            cfg.controller.dream_starts in ("first", "any", "failures"),
            "controller.dream_starts must be 'first', 'any' or 'failures'",
        ),
        (cfg.controller.dream_start_states >= 1, "controller.dream_start_states must be >= 1"),
        (
            cfg.controller.dream_starts == "first" or cfg.mdnrnn.members == 1,
            f"controller.dream_starts {cfg.controller.dream_starts} needs one M (mdnrnn.members 1)",
        ),
        (0 <= cfg.controller.failure_share < 1, "controller.failure_share must be in [0, 1)"),
        (cfg.controller.failure_stretch >= 1, "controller.failure_stretch must be >= 1"),
        (cfg.controller.failure_lead >= 0, "controller.failure_lead must be >= 0"),
        (cfg.controller.where in ("dream", "real"), "controller.where must be 'dream' or 'real'"),
        (cfg.controller.select_real >= 0, "controller.select_real must be >= 0"),
        (
            cfg.controller.select_real == 0 or cfg.controller.where == "dream",
            "controller.select_real needs controller.where dream (a real search's evaluation is real)",
        ),
        (cfg.controller.temperature > 0, "controller.temperature must be > 0"),
        (0 < cfg.controller.max_gas <= 1, "controller.max_gas must be in (0, 1]"),
        (
            cfg.controller.max_gas == 1 or "CarRacing" in cfg.env.id,
            f"controller.max_gas {cfg.controller.max_gas}: {cfg.env.id} has no gas (CarRacing only)",
        ),
        (
            cfg.iterate.final_temperature >= 0,
            "iterate.final_temperature must be >= 0 (0: controller.temperature)",
        ),
        (
            cfg.iterate.final_generations >= 0,
            "iterate.final_generations must be >= 0 (0: as the other rounds)",
        ),
        (cfg.iterate.final_trials >= 0, "iterate.final_trials must be >= 0 (0: controller.trials)"),
        *(
            check
            for name in ("searches", "final_searches")
            for check in (
                (getattr(cfg.iterate, name) >= 1, f"iterate.{name} must be >= 1"),
                (
                    getattr(cfg.iterate, name) == 1 or cfg.iterate.eval_episodes > 0,
                    f"iterate.{name} > 1 needs iterate.eval_episodes > 0 (the real episodes that choose)",
                ),
            )
        ),
        (
            it.final_vote >= 1 and it.final_vote % 2 == 1,
            "iterate.final_vote must be odd and >= 1 (a committee's median needs a middle)",
        ),
        (
            it.final_vote <= last_searches,
            "iterate.final_vote must be at most the last round's searches (iterate.final_searches)",
        ),
        (cfg.controller.population >= 2, "controller.population must be >= 2"),
        (cfg.controller.trials >= 1, "controller.trials must be >= 1"),
        (cfg.iterate.rounds >= 0, "iterate.rounds must be >= 0"),
        (cfg.iterate.episodes >= 1, "iterate.episodes must be >= 1"),
        (0.0 <= cfg.iterate.explore <= 1.0, "iterate.explore must be in [0, 1]"),
        (cfg.iterate.mdnrnn_updates >= 1, "iterate.mdnrnn_updates must be >= 1"),
        (cfg.iterate.choose in ("last", "best"), "iterate.choose must be 'last' or 'best'"),
        (
            cfg.iterate.choose == "last" or cfg.iterate.eval_episodes > 0,
            "iterate.choose best needs iterate.eval_episodes > 0 (the real episodes that choose)",
        ),
        (0.0 <= cfg.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
        (
            re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device) is not None,
            f"device {cfg.device!r}: must be auto, cpu, cuda, cuda:N or mps",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise WorldModelsError(message)


def save_config(cfg: Config, path: Path | str) -> None:
    """Write `cfg` as a run directory's config.json (to a temporary name, then renamed)."""
    from worldmodels.utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(cfg.to_dict(), indent=2) + "\n")


def load_config(path: Path | str) -> Config:
    """A config.json read and validated; a one-line error naming the file if it is missing or bad."""
    path = Path(path)
    if not path.exists():
        raise WorldModelsError(f"{path}: no config.json here; start the run with --preset NAME")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorldModelsError(
            f"{path}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})"
        ) from None
    cfg = from_dict(data, Config, str(path))
    validate(cfg)
    return cfg


def diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the leaf fields that differ between two configs (or config sections)."""
    out = []
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out += diff(x, y, f"{prefix}{f.name}.")
        elif x != y:
            out.append(f"{prefix}{f.name}")
    return out
