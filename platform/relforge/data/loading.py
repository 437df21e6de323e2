"""The one entry point the training engine calls: :func:`load_data`.

It builds the configured dataset reader, resolves the data directory, reads
the train/dev/test splits named in the config, applies ``data.sampling``
(K-shot, ratio, episodes) and returns the splits with the label space, the
verbalizer and the metric::

    data = load_data(run_config.data)          # a relforge.config.DataConfig
    data.splits["train"], data.splits["dev"], data.splits["test"]
    data.labels, data.verbalizer, data.metric
    data.evaluate("test", predictions)         # flat dict of floats

``data.sampling`` (validated here; an unknown key is an error):

* ``{kind: kshot, k: 16, seed: 13}``: GenPT's K-shot protocol: K examples per
  label from the train split and K per label from the dev split (carved from
  train first where there is none), exactly as GenPT's generator draws them;
  the data set's published K-shot files when it ships them and
  ``use_published`` is true.
* ``{kind: ratio, ratio: 0.01, seed: 42, stratified: false}``: a seeded
  sample of the training split; dev as below.
* ``{kind: episodes, n: 5, k: 1, q: 1, num_episodes: 1000, seed: 42}``:
  N-way K-shot episodes over the dev/test splits (FewRel protocol), in
  ``data.episodes``; the train split is returned whole (meta-training).
* ``dev_ratio`` (0.1) and ``dev_seed`` (the sampling seed, else 42): how
  a dev split is carved from train when the data set has no dev split.
* ``dev_size``: score model selection on at most this many dev examples (a
  seeded, label-stratified sample drawn with ``dev_seed``); any kind.
* ``test_size`` and ``test_seed``: score test on a seeded uniform sample of
  that many examples (a CPU budget; the note says so). Not for published
  comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any



from relforge.data.errors import DataError, ReadReport
from relforge.data.example import Example
from relforge.data.metrics import episode_accuracy
from relforge.data.metrics import evaluate as _evaluate
from relforge.data.paths import resolve_data_dir
from relforge.data.splits import Episode, carve_dev, genpt_kshot, ratio_sample, sample_episodes
from relforge.data.verbalizers import Verbalizer, build_verbalizer


from relforge.sampling import (  # noqa: E402,F401 - the schema lives in the config layer
    EpisodeSampling, KShotSampling, NoSampling, RatioSampling, SamplingConfig, parse_sampling,
)
from relforge.sampling import SamplingBase as _Sampling  # noqa: E402


@dataclass
class LoadedData:
    """What a run needs from the data layer."""

    dataset: Any
    #: role ("train", "dev", "test") -> examples; only the roles configured
    splits: dict[str, list[Example]]
    #: the label space, the no-relation label first where there is one
    labels: list[str]
    no_relation: str | None
    verbalizer: Verbalizer
    #: the metric name (relforge.data.metrics.METRICS)
    metric: str
    sampling: _Sampling
    #: role -> evaluation episodes (episode sampling only)
    episodes: dict[str, list[Episode]] = field(default_factory=dict)
    #: role -> how it was read (records, skipped records and why, files)
    reports: dict[str, ReadReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def evaluate(self, role: str, predictions: list[Any]) -> dict[str, float]:
        """Score predictions aligned with ``splits[role]`` by the data set's metric."""
        metric = "micro_f1" if self.metric == "episode_accuracy" else self.metric
        return _evaluate(metric, self.splits[role], predictions, self.no_relation)

    def evaluate_episodes(self, role: str, predictions: list[list[Any]]) -> dict[str, float]:
        """Episode accuracy with its 95% CI; ``predictions[i]`` holds one label
        per query example of ``episodes[role][i]``, in order."""
        eps = self.episodes[role]
        if len(predictions) != len(eps):
            raise ValueError(f"{len(eps)} episodes but predictions for {len(predictions)}")
        results = []
        for i, (ep, preds) in enumerate(zip(eps, predictions)):
            if len(preds) != len(ep.query):
                raise ValueError(f"episode {i}: {len(ep.query)} queries but {len(preds)} predictions")
            correct = sum(1 for ex, p in zip(ep.query, preds) if {p} == set(ex.relations))
            results.append((correct, len(ep.query)))
        return episode_accuracy(results)

    def train_episodes(self, num_episodes: int, seed: int) -> list[Episode]:
        """Meta-training episodes from the train split, with the configured N, K, Q."""
        s = self.sampling
        if not isinstance(s, EpisodeSampling):
            raise DataError("train_episodes needs data.sampling.kind = episodes")
        return sample_episodes(self.splits["train"], s.n, s.k, s.q, num_episodes, seed)


def _read(dataset: Any, split: str, data_dir: Path | None, reports: dict, role: str) -> list[Example]:
    examples = dataset.read(split, data_dir)
    rep = getattr(dataset, "reports", {}).get(getattr(dataset, "canonical_split", lambda s: s)(split))
    if rep is not None:
        reports[role] = rep
    return examples


def load_data(data_config: Any, registry: Any = None, *, data_dir: str | Path | None = None) -> LoadedData:
    """Read and sample the data a run's ``data`` section describes.

    ``data_config``: a :class:`relforge.config.DataConfig` (or a dict of
    one); ``data_dir`` overrides ``data_config.data_dir`` (a CLI option).
    Shown as a step of the progress display (:mod:`relforge.progress`).
    """
    from relforge import progress

    ref = data_config.get("dataset") if isinstance(data_config, dict) else data_config.dataset
    name = ref if isinstance(ref, str) else ref.get("name", "") if isinstance(ref, dict) else getattr(ref, "name", "")
    with progress.task(f"loading data {name}".strip(), unit="splits"):
        return _load_data(data_config, registry, data_dir=data_dir)


def _load_data(data_config: Any, registry: Any = None, *, data_dir: str | Path | None = None) -> LoadedData:
    from relforge.config import DataConfig
    from relforge.registry import get_registry

    if isinstance(data_config, dict):
        data_config = DataConfig.model_validate(data_config)
    if data_config.dataset is None:
        raise DataError("data.dataset is not set: name a dataset (see `relforge plugins`)")
    registry = registry or get_registry()
    dataset = registry.create("dataset", data_config.dataset.name, data_config.dataset.settings)
    explicit = data_dir if data_dir is not None else data_config.data_dir
    # an explicit folder is checked now; $RELFORGE_DATA_DIR only when a reader needs it (a reader whose
    # `path` setting is absolute needs no data directory at all)
    root = resolve_data_dir(explicit) if explicit not in (None, "") else None
    sampling = parse_sampling(data_config.sampling)
    dev_seed = sampling.dev_seed if sampling.dev_seed is not None else getattr(sampling, "seed", 42)
    has_split = getattr(dataset, "has_split", lambda s: s in dataset.splits())
    reports: dict[str, ReadReport] = {}
    notes: list[str] = []
    tr, dv, te = data_config.train_split, data_config.dev_split, data_config.test_split
    splits = _train_and_dev(dataset, tr, dv, sampling, root, reports, notes, dev_seed, has_split)
    _cap_dev(splits, sampling, dv, dev_seed, notes)
    if te is not None:
        splits["test"] = _test_split(dataset, te, sampling, root, reports, notes)

    episodes: dict[str, list[Episode]] = {}
    metric = getattr(dataset, "metric", "micro_f1")
    if isinstance(sampling, EpisodeSampling):
        metric = "episode_accuracy"
        for role in ("dev", "test"):
            if role in splits:
                episodes[role] = sample_episodes(splits[role], sampling.n, sampling.k, sampling.q,
                                                 sampling.num_episodes, sampling.seed)
    if metric == "micro_f1":
        multi = {role: sum(1 for ex in exs if len(ex.relations) > 1) for role, exs in splits.items()}
        if any(multi.values()):
            metric = "multilabel"
            notes.append("metric: multilabel (micro-F1 over every relation of a pair, with the multi-relation "
                         "pairs scored apart) because pairs hold several relations ("
                         + ", ".join(f"{role}: {n}" for role, n in multi.items() if n) + ")")
    labels = list(dataset.labels(root))
    if "train" in splits:
        seen = {r for ex in splits["train"] for r in ex.relations}
        for role in ("dev", "test"):
            unseen = sorted({r for ex in splits.get(role, []) for r in ex.relations} - seen)
            if unseen:
                notes.append(f"{role} has label(s) with no training example: {', '.join(unseen)} (they are in "
                             f"the label space, but nothing teaches them)")
    verbalizer = build_verbalizer(dataset, labels, data_config.verbalizer, root)
    return LoadedData(dataset=dataset, splits=splits, labels=labels, no_relation=dataset.no_relation,
                      verbalizer=verbalizer, metric=metric, sampling=sampling, episodes=episodes,
                      reports=reports, notes=notes)


def load_splits(data_config: Any, registry: Any = None, *, data_dir: str | Path | None = None) \
        -> dict[str, list[Example]]:
    """Only the splits of :func:`load_data`: role -> examples."""
    return load_data(data_config, registry, data_dir=data_dir).splits


def _train_and_dev(dataset, tr, dv, sampling, root, reports, notes, dev_seed, has_split) -> dict[str, list[Example]]:
    """The train and dev splits: read, K-shot sampled (published split or
    the GenPT protocol), carved from train when the data set has no dev,
    ratio-sampled; each step noted."""
    splits: dict[str, list[Example]] = {}
    train_full: list[Example] | None = None
    if tr is not None:
        if isinstance(sampling, KShotSampling):
            published = dataset.predefined_kshot(sampling.k, sampling.seed, root) \
                if sampling.use_published and hasattr(dataset, "predefined_kshot") else None
            if published is not None:
                splits["train"], splits["dev"] = published
                notes.append(f"published {sampling.k}-shot split for seed {sampling.seed}")
            else:
                train_full = _read(dataset, tr, root, reports, "train")
                if dv is not None and has_split(dv):
                    dev_full = _read(dataset, dv, root, reports, "dev")
                else:  # no dev split: carve one, then sample from both as GenPT does
                    train_full, dev_full = carve_dev(train_full, sampling.dev_ratio, dev_seed)
                    notes.append(f"no dev split: dev carved from {tr!r} ({sampling.dev_ratio:.0%} per label, "
                                 f"seed {dev_seed}) before K-shot sampling")
                splits["train"], splits["dev"] = genpt_kshot(train_full, dev_full, sampling.k, sampling.seed)
                notes.append(f"{sampling.k}-shot train and dev sampled with seed {sampling.seed} (GenPT protocol)")
        else:
            train_full = _read(dataset, tr, root, reports, "train")
            splits["train"] = train_full
    if dv is not None and "dev" not in splits:
        if has_split(dv):
            splits["dev"] = _read(dataset, dv, root, reports, "dev")
        elif train_full is not None:
            splits["train"], splits["dev"] = carve_dev(train_full, sampling.dev_ratio, dev_seed)
            notes.append(f"dataset has no {dv!r} split: dev carved from {tr!r} "
                         f"({sampling.dev_ratio:.0%} per label, seed {dev_seed})")
        else:
            raise DataError(f"dataset {dataset.name!r} has no split {dv!r} and no train split to carve it from")
    if isinstance(sampling, RatioSampling) and "train" in splits:
        splits["train"] = ratio_sample(splits["train"], sampling.ratio, sampling.seed,
                                       stratified=sampling.stratified)
        notes.append(f"{sampling.ratio:.0%} of train sampled with seed {sampling.seed}")
    return splits


def _cap_dev(splits, sampling, dv, dev_seed, notes) -> None:
    """Drop a dev set the configuration does not want; cap it at ``dev_size``."""
    if dv is None:  # K-shot sampling draws a dev set the configuration does not want
        splits.pop("dev", None)
    elif sampling.dev_size is not None and len(splits.get("dev", ())) > sampling.dev_size \
            and not isinstance(sampling, EpisodeSampling):
        full = len(splits["dev"])
        splits["dev"] = ratio_sample(splits["dev"], sampling.dev_size / full, dev_seed, stratified=True)
        notes.append(f"dev: {len(splits['dev'])} of {full} examples (dev_size {sampling.dev_size}, "
                     f"stratified, seed {dev_seed})")


def _test_split(dataset, te, sampling, root, reports, notes) -> list[Example]:
    """The test split, uniformly sampled down to ``test_size`` when asked (and said)."""
    test = _read(dataset, te, root, reports, "test")
    if sampling.test_size is not None and len(test) > sampling.test_size \
            and not isinstance(sampling, EpisodeSampling):
        full = len(test)
        seed = sampling.test_seed if sampling.test_seed is not None else getattr(sampling, "seed", 42)
        test = ratio_sample(test, sampling.test_size / full, seed)
        notes.append(f"test: a uniform sample of {len(test)} of {full} examples (test_size "
                     f"{sampling.test_size}, seed {seed}), not the whole split")
    return test
