"""The utility router: per prompt, the option (a tier, or a cascade of tiers) with the best predicted utility.

For a prompt, its ``k`` nearest training prompts of the same task type predict
each option's accuracy (shrunk toward the option's accuracy on that task
type) and cost; the router takes the option with the highest
``accuracy - price x cost / unit_cost``. The price of accuracy is what
calibration (``paymaster.evals``) sets. Nothing here draws a random number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ._cascade import Cascade
from ._deps import require_numpy

_TYPE_VOTERS = 15
"""How many nearest training prompts vote on an unlabelled prompt's task type."""

Option = str | Cascade
"""A model name, or a cascade."""

def option_label(option: Option) -> str:
    """How an option is named in reports and routes."""
    return option if isinstance(option, str) else option.label


@dataclass(frozen=True)
class UtilityRouter:
    """Training prompts' embeddings, task types and the candidate options' recorded outcomes, plus the price."""

    options: tuple[Option, ...]
    embeddings: Any
    task_types: tuple[str, ...]
    correct: Any
    cost: Any
    k: int
    prior_weight: float
    price: float
    unit_cost: float
    """The reference model's mean cost per training prompt: costs are counted in this unit."""
    boilerplate: tuple[str, ...] = ()
    """Ids of the prompt blocks left out before embedding (see ``learn_boilerplate``)."""

    def predict(self, vectors: Any, task_types: Sequence[str], *, loo: bool = False) -> tuple[Any, Any]:
        """Predicted accuracy and cost of every option for prompts with these embeddings and task types.

        With ``loo`` the prompts are the training prompts themselves, each scored without itself.
        """
        np = require_numpy()
        if len(vectors) != len(task_types):
            raise ConfigurationError(f"{len(vectors)} embeddings for {len(task_types)} task types")
        train_types = np.array(self.task_types, dtype=object)
        query_types = np.array(list(task_types), dtype=object)
        accuracy = np.zeros((len(vectors), len(self.options)))
        cost = np.zeros_like(accuracy)
        for t in sorted(set(task_types)):
            q = np.flatnonzero(query_types == t)
            base = np.flatnonzero(train_types == t)
            if len(base) < 2:  # an unseen task type: every training prompt is a neighbour
                base = np.arange(len(train_types))
            sims = np.asarray(vectors[q], dtype=np.float64) @ np.asarray(self.embeddings[base], dtype=np.float64).T
            if loo:
                sims[q[:, None] == base[None, :]] = -np.inf
            k = max(1, min(self.k, len(base) - (1 if loo else 0)))
            nbrs = base[np.argsort(-sims, axis=1, kind="stable")[:, :k]]
            prior = self.correct[base].mean(axis=0)
            accuracy[q] = (self.correct[nbrs].sum(axis=1) + self.prior_weight * prior) / (k + self.prior_weight)
            cost[q] = self.cost[nbrs].mean(axis=1)
        return accuracy, cost

    def choose(self, accuracy: Any, cost: Any, price: float | None = None) -> Any:
        """Per prompt, the column of the option with the highest predicted utility (ties: the lower column)."""
        np = require_numpy()
        p = self.price if price is None else price
        return np.argmax(accuracy - p * cost / max(self.unit_cost, 1e-12), axis=1)

    def infer_task_types(self, vectors: Any) -> list[str]:
        """Each prompt's task type as most of its nearest training prompts have it (ties: the first by name).

        The runtime does not know a subtask's task type; the neighbours do.
        """
        np = require_numpy()
        sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(self.embeddings, dtype=np.float64).T
        k = max(1, min(_TYPE_VOTERS, sims.shape[1]))
        nbrs = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out = []
        for row in nbrs:
            votes = Counter(self.task_types[int(i)] for i in row)
            out.append(min(votes, key=lambda t: (-votes[t], t)))
        return out

    def route(self, vectors: Any, task_types: Sequence[str] | None = None) -> list[Option]:
        """The option chosen for each prompt (task types inferred from the neighbours when not given)."""
        types = list(task_types) if task_types is not None else self.infer_task_types(vectors)
        accuracy, cost = self.predict(vectors, types)
        return [self.options[int(j)] for j in self.choose(accuracy, cost)]

    def renamed(self, names: Mapping[str, str]) -> UtilityRouter:
        """The same router with its options' model names replaced by ``names`` (e.g. tier names)."""
        def one(o: Option) -> Option:
            if isinstance(o, str):
                return names.get(o, o)
            return Cascade(*(names.get(m, m) for m in (o.answer, o.check, o.escalate)))

        return dataclasses.replace(self, options=tuple(one(o) for o in self.options))

    def digest(self) -> str:
        """SHA-256 of what the router learned from (embeddings, task types, outcomes, boilerplate)."""
        np = require_numpy()
        h = hashlib.sha256()
        h.update("\n".join([*self.task_types, "--", *self.boilerplate]).encode())
        for array in (self.embeddings, self.correct, self.cost):
            a = np.ascontiguousarray(array, dtype=np.float64 if array is not self.embeddings else np.float32)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def save_index(self, path: str | Path) -> str:
        """Write the learned part as a .npz file (no pickles); return its digest."""
        np = require_numpy()
        with Path(path).open("wb") as f:
            np.savez(f, embeddings=np.asarray(self.embeddings, dtype=np.float32),
                     task_types=np.array(self.task_types), correct=np.asarray(self.correct, dtype=np.float64),
                     cost=np.asarray(self.cost, dtype=np.float64), boilerplate=np.array(self.boilerplate, dtype="U16"))
        return self.digest()

    @classmethod
    def load_index(
        cls, path: str | Path, *, options: Sequence[Option], k: int, prior_weight: float, price: float,
        unit_cost: float,
    ) -> UtilityRouter:
        """Read an index written by ``save_index`` and put the policy's settings around it."""
        np = require_numpy()
        p = Path(path)
        try:
            with p.open("rb") as f, np.load(f, allow_pickle=False) as data:
                router = cls(
                    options=tuple(options), embeddings=data["embeddings"].astype(np.float32),
                    task_types=tuple(str(t) for t in data["task_types"]), correct=data["correct"],
                    cost=data["cost"], k=k, prior_weight=prior_weight, price=price, unit_cost=unit_cost,
                    boilerplate=tuple(str(b) for b in data["boilerplate"]),
                )
        except FileNotFoundError:
            raise ConfigurationError(f"utility index {p} does not exist; calibration writes it next to the policy") \
                from None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigurationError(f"utility index {p} is unreadable: {exc}") from None
        if router.correct.shape[1] != len(router.options):
            raise ConfigurationError(f"utility index {p} has {router.correct.shape[1]} options, the policy "
                                     f"{len(router.options)}")
        return router

    def describe(self) -> str:
        """The router in one line."""
        return (f"{len(self.options)} options (models and cascades on a task type's Pareto front), k={self.k}, "
                f"prior weight {self.prior_weight}, price of accuracy {self.price:.4g}")


