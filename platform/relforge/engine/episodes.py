"""N-way K-shot episodic evaluation (FewRel protocol) for any trained model.

A model answers an episode in one of two ways, picked by what it offers:

* :class:`~relforge.components.Embeds` (``embed(examples, batch_size) ->
  Tensor[n, d]``; the typed-marker classifier, TKRE): prototypical inference -- each of the episode's N
  relations is the mean of its K support vectors, and a query takes the
  relation of the nearest prototype (squared Euclidean distance, as in
  Prototypical Networks). Every distinct example is embedded once, however
  many episodes it appears in.
* otherwise ``rank(examples, batch_size, labels=...)``, part of every
  :class:`~relforge.components.REModel` (generative models): the query is
  ranked over the episode's N verbalized relations only and takes the top
  one; the support set is not used (zero-shot over the relation names).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from relforge import progress
from relforge.components import Embeds
from relforge.data.splits import Episode


def episode_mode(model) -> str:
    return "prototypes" if isinstance(model, Embeds) else "restricted_ranking"


def predict_episodes(model, episodes: Sequence[Episode], batch_size: int = 32,
                     label: str = "episodes") -> list[list[str]]:
    """One predicted label per query example of every episode, in order
    (``label`` names the step in the progress display)."""
    mode = episode_mode(model)
    if mode == "prototypes":
        return _prototype_predictions(model, episodes, batch_size, label)
    out = []
    with progress.task(f"{label} ({len(episodes)})", total=sum(len(ep.query) for ep in episodes), unit="queries"):
        for ep in episodes:
            rankings = model.rank(ep.query, batch_size=batch_size, labels=ep.labels)
            out.append([r[0].label if r else ep.labels[0] for r in rankings])
    return out


@torch.no_grad()
def _prototype_predictions(model, episodes: Sequence[Episode], batch_size: int, label: str) -> list[list[str]]:
    unique: dict[str, object] = {}
    for ep in episodes:
        for ex in (*ep.support, *ep.query):
            unique.setdefault(_key(ex), ex)
    keys = list(unique)
    with progress.task(f"{label} ({len(episodes)}): embedding", total=len(keys)):
        vectors = model.embed([unique[k] for k in keys], batch_size=batch_size).float().cpu()
    row = {k: i for i, k in enumerate(keys)}
    out = []
    for ep in episodes:
        protos = []
        for label in ep.labels:
            idx = [row[_key(ex)] for ex in ep.support if label in ex.relations]
            if not idx:
                raise ValueError(f"episode has no support example for {label!r}")
            protos.append(vectors[idx].mean(0))
        queries = vectors[[row[_key(ex)] for ex in ep.query]]
        dist = torch.cdist(queries, torch.stack(protos)) ** 2
        out.append([ep.labels[j] for j in dist.argmin(-1).tolist()])
    return out


def _key(ex) -> str:
    # ids are unique within a split; the text guards against two splits sharing ids
    return f"{ex.id}\x00{ex.text}\x00{ex.head.start}\x00{ex.tail.start}"
