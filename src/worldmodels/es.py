"""CMA-ES (pycma) as an ask/tell object that maximises return. The sign flip between "maximise return" and
pycma's "minimise" happens here and nowhere else. Its whole state, random generator included, pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from worldmodels.errors import WorldModelsError
from worldmodels.utils import atomic_write_bytes


class _Randn:
    """pycma's `randn(*shape)` option backed by our own seeded generator (so it pickles with the ES)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAES:
    def __init__(
        self, n_params: int, population: int, sigma0: float, seed: int, x0: np.ndarray | None = None
    ) -> None:
        """x0: the starting mean (default 0, the paper's)."""
        import cma  # here, not at the top: it imports matplotlib (0.3 s for every command that loads C)

        opts = {
            "popsize": population,
            "seed": seed,
            "randn": _Randn(seed),
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "tolx": 0,
            "tolfun": 0,
            "tolfunhist": 0,
            "tolstagnation": int(1e9),
        }
        start = np.zeros(n_params) if x0 is None else np.asarray(x0, np.float64).reshape(n_params)
        self.es = cma.CMAEvolutionStrategy(start, sigma0, opts)
        self.generation = 0
        self.best_params = start.astype(np.float32)
        """The mean with the best periodic evaluation so far (what train-controller ships)."""
        self.best_eval = -np.inf

    def ask(self) -> np.ndarray:
        """The generation's candidates, (population, n_params)."""
        self._asked = np.asarray(self.es.ask())
        return self._asked.copy()

    def tell(self, returns: np.ndarray) -> None:
        """Returns (population,) of the candidates last asked: higher is better."""
        self.es.tell(list(self._asked), list(-np.asarray(returns, dtype=float)))
        self.generation += 1

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.es.mean)

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> CMAES:
        try:
            obj = pickle.loads(Path(path).read_bytes())
        except Exception as e:
            raise WorldModelsError(
                f"{path}: not a readable CMA-ES state ({type(e).__name__})"
            ) from None
        if not isinstance(obj, CMAES):
            raise WorldModelsError(f"{path}: not a CMA-ES state")
        return obj
