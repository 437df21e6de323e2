"""The ``relforge`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table


app = typer.Typer(
    name="relforge",
    help="RelForge: a plugin-registry research platform for relation extraction. Anywhere on the command "
         "line: --quiet (-q) hides progress (RELFORGE_QUIET=1), --debug shows a user error's traceback "
         "(RELFORGE_DEBUG=1).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect configurations.", no_args_is_help=True)
app.add_typer(config_app, name="config")

from relforge.data.cli import data_app  # noqa: E402

app.add_typer(data_app, name="data")

# tables (bench, report) keep their columns when the output is not a terminal
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


#: set by ``--debug`` / ``RELFORGE_DEBUG=1``: user errors show their traceback
DEBUG = False


def _fail(message: str, code: int = 2) -> None:
    """A user error: one line on stderr, exit code 2 (1 for a failure that is
    not the input's fault, such as failed suite cells). With ``--debug``,
    called while handling an exception, that exception is raised instead."""
    if DEBUG and sys.exc_info()[1] is not None:
        raise  # noqa: PLE0704 - re-raise the exception being handled
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List installed plugins, their versions and their components by kind."""
    from relforge.registry import get_registry

    reg = get_registry()
    info = reg.as_dict()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        raise typer.Exit(1 if reg.errors else 0)
    for p in info["plugins"]:
        status = f"[red]failed: {p['error']}[/]" if p["error"] else "[green]ok[/]"
        console.print(f"[bold]{p['name']}[/] {p['version'] or '?'}  ({p['source']})  {status}", highlight=False)
        if not p["components"]:
            lifecycle = [h for h in p.get("hooks", []) if h.startswith("on_")]
            console.print(f"    lifecycle hooks: {', '.join(lifecycle)}" if lifecycle else "    (no components)",
                          highlight=False)
        for kind, comps in p["components"].items():
            table = Table(show_header=False, box=None, padding=(0, 1))
            for c in comps:
                alias = f" [dim](aliases: {', '.join(c['aliases'])})[/]" if c["aliases"] else ""
                table.add_row(f"    [cyan]{c['short']}[/]", f"{c['description']}{alias}{_ability_line(c)}")
            console.print(f"  {kind}:")
            console.print(table)
    if reg.errors:
        err_console.print(f"[red]{len(reg.errors)} plugin problem(s):[/]")
        for e in reg.errors:
            err_console.print(f"  - {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _ability_line(c: dict) -> str:
    parts = []
    if c.get("uses"):
        parts.append(f"uses {', '.join(c['uses'])}")
    if c.get("provides"):
        parts.append(f"provides {', '.join(c['provides'])}")
    for section, needed in (c.get("requires") or {}).items():
        parts.append(f"needs from {section}: {', '.join(needed)}")
    return f"\n[dim]{'; '.join(parts)}[/]" if parts else ""


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Config files and ``key=value`` overrides. An argument naming an
    existing file is a file even when its path holds ``=`` (suite cells'
    folders are named ``cell=...,seed=13``)."""
    def is_file(a: str) -> bool:
        return "=" not in a or (a.endswith((".yaml", ".yml", ".json")) and Path(a).is_file())

    return [a for a in args if is_file(a)], [a for a in args if not is_file(a)]


@config_app.command("show")
def config_show(
    args: Annotated[Optional[list[str]], typer.Argument(
        help="Config files (YAML) and key=value overrides, in order.")] = None,
) -> None:
    """Print the resolved, validated configuration (method defaults + files + overrides)."""
    from relforge.config import ConfigError, load_config

    files, overrides = _split_args(args or [])
    try:
        resolved = load_config(files, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(resolved.to_yaml(), nl=False)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name (a Python identifier, e.g. my_method).")],
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Where to create it "
                                                      "(default: ./relforge-<name>).")] = None,
) -> None:
    """Scaffold a working third-party plugin package with one component of each kind and a test."""
    from relforge.scaffold import ScaffoldError, scaffold_plugin

    try:
        path = scaffold_plugin(name, directory)
    except ScaffoldError as exc:
        _fail(str(exc))
    console.print(f"Created plugin [bold]{name}[/] in {path}\n"
                  f"Next: pip install -e {path} && relforge plugins && pytest {path}", highlight=False)


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


DataDirOption = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Folder holding the data sets (default: data.data_dir, then $RELFORGE_DATA_DIR).")]


@app.command()
def train(
    args: Annotated[list[str], typer.Argument(help="Config files (YAML) and key=value overrides, in order.")],
    data_dir: DataDirOption = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="The run folder "
                          "(default: <output_dir>/<name>-<id>); an existing one is resumed.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume",
                      help="Resume from the run folder's last checkpoint.")] = True,
) -> None:
    """Train a model from a config: relforge train CONFIG \\[key=value ...]."""
    from relforge.config import ConfigError, load_config
    from relforge.data.errors import DataError
    from relforge.engine.pipeline import train_run
    from relforge.engine.trainer import NonFiniteLossError

    files, overrides = _split_args(args)
    try:
        resolved = load_config(files, overrides)
        outcome = train_run(resolved, data_dir=data_dir, output_dir=output_dir, resume=resume)
    except (ConfigError, DataError, NonFiniteLossError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"run folder: {outcome.output_dir}\nmodel: {outcome.model_dir}", highlight=False)
    if outcome.dev_metrics:
        _print_metrics("dev", outcome.dev_metrics)
    if outcome.test_metrics:
        _print_metrics("test", outcome.test_metrics)


def _model_folder(path: Path) -> Path:
    from relforge.engine.hub import local_model_folder
    from relforge.engine.models import META_FILE

    folder = local_model_folder(path)
    if folder is not None:
        return folder
    _fail(f"{path} is neither a model folder (with {META_FILE}) nor a run folder with best/")
    raise AssertionError


def _check_runtime(runtime: str | None) -> None:
    """Before a model is loaded (seconds): ``--runtime`` names one of the Extractor's runtimes."""
    from relforge.engine.extractor import RUNTIMES

    if runtime is not None and runtime not in RUNTIMES:
        _fail(f"--runtime {runtime!r}: torch (the default) or onnx (encoder models, needs relforge[onnx])")


def _model_source(model: str) -> str | Path:
    """A local model or run folder, or a Hub repository id (``org/name``,
    not a local path)."""
    from relforge.engine.hub import local_model_folder

    folder = local_model_folder(model)
    if folder is not None:
        return folder
    if Path(model).exists() or model.count("/") != 1 or model.startswith((".", "/")):
        return _model_folder(Path(model))
    return model


@app.command()
def push(
    run: Annotated[Path, typer.Argument(help="A run folder or a model folder.")],
    repo_id: Annotated[str, typer.Argument(help="The Hub repository (org/name); created if missing.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    branch: Annotated[Optional[str], typer.Option("--branch", help="Push to this branch.")] = None,
    local: Annotated[Optional[Path], typer.Option("--local", help="Write the repository's files (model, "
                     "results.json, model card README.md) to this folder instead of uploading.")] = None,
) -> None:
    """Push a trained model to the Hugging Face Hub with a generated model card (load it back with
    Extractor.from_pretrained("org/name") or `relforge predict org/name`). Log in first (`hf auth login`
    or HF_TOKEN)."""
    from relforge.engine.extractor import Extractor

    extractor = Extractor.from_pretrained(_model_folder(run), device="cpu")
    if local is not None:
        extractor.save_pretrained(local, model_card_kwargs={"repo_id": repo_id})
        console.print(f"wrote {repo_id}'s files to {local} (model, results.json, README.md); upload them with "
                      f"`relforge push {run} {repo_id}`", highlight=False)
        return
    url = extractor.push_to_hub(repo_id, private=private, branch=branch, model_card_kwargs={"repo_id": repo_id},
                                commit_message=f"RelForge model from {run}")
    console.print(f"pushed to {repo_id}: {url}", highlight=False)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A run folder or a model folder (its best/).")],
    data: Annotated[Optional[str], typer.Option("--data", help="A dataset name, or a JSON-lines file in the "
                    "generic format (default: the run's own dataset).")] = None,
    split: Annotated[str, typer.Option("--split", help="The split to evaluate.")] = "test",
    data_dir: DataDirOption = None,
    setting: Annotated[Optional[list[str]], typer.Option("--set", help="A dataset setting, key.path=value "
                       "(repeatable), e.g. --set files.ood=/data/val_pubmed.json --split ood.")] = None,
    episodes: Annotated[Optional[bool], typer.Option("--episodes/--no-episodes", help="Score N-way K-shot "
                        "episodes of the split (default: when the run was trained with episode sampling).")] = None,
    sampling: Annotated[Optional[list[str]], typer.Option("--sampling", help="An episode setting, key=value "
                        "(repeatable): n, k, q, num_episodes, seed (default: the run's, else 5-way 1-shot, 1 query, "
                        "1000 episodes, seed 42).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write predictions (JSON lines).")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="micro_f1, multilabel or semeval (default: the "
                      "data set's, multilabel where pairs hold several relations).")] = None,
    unknown_labels: Annotated[str, typer.Option("--unknown-labels", help="Gold labels the model was not trained "
                              "on: error (default), as-no-relation, or ignore (leave those examples out).")] = "error",
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: dynamic int8 quantisation of the "
                        "linear layers for CPU inference.")] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnx: the encoder of an encoder model on "
                       "ONNX Runtime (CPU; needs relforge[onnx]).")] = None,
) -> None:
    """Evaluate a trained run or model on a data split, or on N-way K-shot episodes of it."""
    from relforge.config import ConfigError, settings_from_pairs
    from relforge.data.errors import DataError
    from relforge.data.export import write_predictions_jsonl
    from relforge.data.loading import load_data
    from relforge.engine.extractor import Extractor
    from relforge.engine.pipeline import predict_sets

    _check_runtime(runtime)
    folder = _model_folder(model)
    ex = Extractor.from_pretrained(folder, quantize=quantize, runtime=runtime)
    data_cfg = ex.resolved.run.data.model_dump()
    try:
        extra = settings_from_pairs(setting or [])
        episode_settings = settings_from_pairs(sampling or [], option="--sampling")
    except ConfigError as exc:
        _fail(str(exc))
    if data is not None:
        if data.endswith((".jsonl", ".json")) or Path(data).is_file():
            f = Path(data).resolve()
            data_cfg["dataset"] = {"name": "relforge.jsonl", "path": str(f.parent), "files": {split: f.name},
                                   "no_relation": ex.model.no_relation}
        else:
            data_cfg["dataset"] = {"name": data}
    if extra:
        ref = data_cfg["dataset"]
        ref = {"name": ref} if isinstance(ref, str) else dict(ref)
        data_cfg["dataset"] = _merged(ref, extra)
    own = dict(data_cfg.get("sampling") or {})
    if episodes is None:
        episodes = own.get("kind") == "episodes" or bool(episode_settings)
    if episode_settings and not episodes:
        _fail("--sampling sets episodes; drop --no-episodes")
    if episodes and (metric is not None or unknown_labels != "error"):
        _fail("episodes are scored by accuracy over each episode's own relations: --metric and --unknown-labels "
              "do not apply (drop them, or pass --no-episodes)")
    if episodes:
        base = {k: v for k, v in own.items() if k != "kind"} if own.get("kind") == "episodes" else {}
        episode_settings.pop("kind", None)
        data_cfg["sampling"] = {"kind": "episodes", **base, **episode_settings}
        from relforge.sampling import parse_sampling

        try:
            parse_sampling(data_cfg["sampling"])
        except ValueError as exc:  # one line per problem, named as the option that set it
            problems = [ln.strip().replace("data.sampling.", "--sampling ") for ln in str(exc).splitlines()[1:]]
            _fail("; ".join(problems) or str(exc))
    else:
        data_cfg["sampling"] = {}
    data_cfg.update({"train_split": None, "dev_split": None, "test_split": split})
    from relforge.data.metrics import METRICS
    from relforge.engine.labels import apply_label_policy

    if metric is not None and metric not in METRICS:
        _fail(f"--metric {metric!r}: use one of {', '.join(m for m in METRICS if m != 'episode_accuracy')}")
    where = f"{data or 'the run data set'} ({split})"
    try:
        loaded = load_data(data_cfg, data_dir=data_dir)
        if episodes:
            note = None
        else:
            examples, note = apply_label_policy(loaded.splits["test"], ex.model.labels, unknown_labels, where=where)
    except (DataError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for line in [*loaded.notes, *([note] if note else [])]:
        err_console.print(f"data: {line}", highlight=False, soft_wrap=True)
    batch_size = ex.resolved.run.train.eval_batch_size
    if episodes:
        _evaluate_episodes(ex, loaded, split, batch_size, output)
        return
    loaded.splits["test"] = examples
    if metric is not None:
        loaded.metric = metric
    import torch

    with torch.inference_mode():
        preds, _ = predict_sets(ex.model, examples, ex.resolved, batch_size, label=f"evaluate {split}",
                                by_length=True)
    try:
        metrics = loaded.evaluate("test", preds)
    except ValueError as exc:
        _fail(f"{exc} (choose the metric with --metric)")
    _print_metrics(f"{split} ({len(examples)} examples)", metrics)
    if output is not None:
        write_predictions_jsonl(output, examples, preds, no_relation=loaded.no_relation)
        console.print(f"predictions: {output}", highlight=False)


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _evaluate_episodes(ex, loaded, split: str, batch_size: int, output: Optional[Path]) -> None:
    """``relforge evaluate --episodes``: the model's answers to the split's
    episodes (prototypes or restricted ranking, relforge.engine.episodes)."""
    from relforge.engine.episodes import episode_mode, predict_episodes
    from relforge.engine.pipeline import write_episode_predictions

    eps = loaded.episodes.get("test") or []
    if not eps:
        _fail(f"no episodes could be drawn from {split!r}")
    s = loaded.sampling
    console.print(f"{len(eps)} episodes, {s.n}-way {s.k}-shot, {s.q} quer{'y' if s.q == 1 else 'ies'} per relation, "
                  f"seed {s.seed} ({episode_mode(ex.model)})", highlight=False)
    try:
        answers = predict_episodes(ex.model, eps, batch_size, label=f"evaluate {split} episodes")
    except KeyError as exc:  # a generative model without words for an episode's relation
        _fail(f"{exc.args[0] if exc.args else exc}: give the data set's verbalizer words for those relations "
              f"(a model folder's label_words) or use a model that embeds pairs (prototypes)")
    metrics = loaded.evaluate_episodes("test", answers)
    _print_metrics(f"{split} ({len(eps)} episodes)", metrics)
    if output is not None:
        write_episode_predictions(output, eps, answers)
        console.print(f"predictions: {output}", highlight=False)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="A run folder, a model folder or a Hub repository id (org/name).")],
    input: Annotated[str, typer.Option("--input", "-i", help="JSON lines in the generic format (or records with "
                     "'entities': every pair scored); - for stdin.")] = "-",
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write predictions; - for stdout.")] = "-",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    on_error: Annotated[str, typer.Option("--on-error", help="A bad input line: stop (default; what was "
                        "predicted before it is written) or skip (counted and reported).")] = "stop",
    window: Annotated[int, typer.Option("--window", min=1, help="Pairs gathered before ranking, in "
                      "length-sorted batches (less padding); written in input order.")] = 256,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: dynamic int8 quantisation of the "
                        "linear layers for CPU inference (benchmarks/perf/inference.py measures speed and "
                        "agreement).")] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnx: the encoder of an encoder model "
                       "(relforge.marker_classifier) on ONNX Runtime, exported once and cached (CPU; needs "
                       "relforge[onnx]); the same predictions as torch to float tolerance.")] = None,
) -> None:
    """Predict relations for a JSON-lines file (or stdin) with a trained model, batch by batch: predictions are
    written as they are made, with progress on stderr."""
    from relforge.engine.predict import stream_predictions

    if on_error not in ("stop", "skip"):
        _fail(f"--on-error {on_error!r}: use stop or skip")
    _check_runtime(runtime)
    if input != "-" and not Path(input).is_file():
        _fail(f"--input {input}: no such file")
    from relforge.engine.extractor import Extractor

    extractor = Extractor.from_pretrained(_model_source(model), quantize=quantize, runtime=runtime)
    report = stream_predictions(extractor, input, output, batch_size=batch_size, on_error=on_error, window=window)
    where = "stdout" if output == "-" else output
    if report.error is not None:
        _fail(f"{report.error}; {report.written} prediction(s) written to {where} before it (--on-error skip "
              f"goes on past bad lines)")
    skipped = f"; skipped {len(report.skipped)} bad line(s), the first: {report.skipped[0]}" if report.skipped else ""
    overlap = (f"; {report.overlapping} record(s) have overlapping head and tail spans (predicted as given)"
               if report.overlapping else "")
    pairs = (f" ({report.mention_pairs} of them the entity pairs of {report.mention_records} record(s) with "
             f"'entities')" if report.mention_records else "")
    err_console.print(f"{report.written} predictions written to {where}{pairs}{skipped}{overlap}", highlight=False,
                      soft_wrap=True)


def _suite_path(suite: str) -> Path:
    """A suite file, or a suite name looked up in ./benchmarks/suites and in
    the source tree's benchmarks/suites."""
    p = Path(suite)
    if p.is_file():
        return p
    here = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
    for folder in (Path("benchmarks") / "suites", here):
        for candidate in (folder / suite, folder / f"{suite}.yaml"):
            if candidate.is_file():
                return candidate
    _fail(f"suite {suite!r} not found (looked for the file, and in benchmarks/suites/ here and in {here})")
    raise AssertionError


@app.command()
def bench(
    suite: Annotated[str, typer.Argument(help="A suite file (YAML) or the name of one in benchmarks/suites/.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides for every cell.")] = None,
    data_dir: DataDirOption = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the cells' run folders go.")] = Path(
        "runs/bench"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the cells and stop.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: run every n-th cell from the i-th "
                     "(machines sharing one MLflow server split a suite this way).")] = None,
    rerun: Annotated[bool, typer.Option("--rerun", help="Run finished cells again too.")] = False,
    executor: Annotated[Optional[str], typer.Option("--executor", help="Where cells run: inline (this process, "
                        "the default), local (processes on this machine), slurm (a job array through submitit); "
                        "default: the suite file's executor.name.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", min=1, help="Cells running at once (local, slurm).")] = None,
    executor_set: Annotated[Optional[list[str]], typer.Option("--executor-set", help="key=value: an executor "
                            "setting (partition=gpu, gpus_per_node=1, timeout_min=600, additional.account=abc); "
                            "repeat.")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Follow a sweep that is running (or whose driver "
                      "died) from its sweep.json: wait for its cells, then show the table and write the "
                      "report.")] = False,
) -> None:
    """Run a benchmark suite (methods x data sets x settings x seeds) and print a comparison table.

    Cells finished earlier (same configuration hash) are skipped; failed or
    interrupted ones run again. The report (relforge report) is written at the end."""
    from relforge.bench.runner import attach_suite, parse_shard, run_suite
    from relforge.bench.suite import read_suite
    from relforge.config import ConfigError, settings_from_pairs

    try:
        spec = read_suite(_suite_path(suite))
        if attach:
            if dry_run or executor or jobs or executor_set or rerun or overrides:
                _fail("--attach follows the sweep as it was started: give it no other option than --output-dir "
                      "(and --shard i/n for a shard's sweep)")
            attached = attach_suite(spec, output_dir=output_dir, console=console, shard=parse_shard(shard))
            failed = [r for r in attached if r.status == "FAILED"]
            if failed:
                _fail(code=1, message=f"{len(failed)} of {len(attached)} cells failed: " + "; ".join(
                    f"{r.cell.cell_id}: {r.error}" for r in failed))
            return
        which = parse_shard(shard)
        settings = settings_from_pairs(executor_set or [], option="--executor-set")
        if jobs is not None:
            if not executor and not (spec.executor or {}).get("name"):
                _fail("--jobs runs cells at once on an executor that can: add --executor local (this machine) "
                      "or --executor slurm")
            settings["jobs"] = jobs
        results = run_suite(spec, output_dir=output_dir, data_dir=data_dir, extra_overrides=list(overrides or []),
                            console=console, shard=which, rerun=rerun, executor=executor,
                            executor_settings=settings, dry_run=dry_run)
        if dry_run:
            return
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    failed = [r for r in results if r.status == "FAILED"]
    if failed:
        _fail(code=1, message=f"{len(failed)} of {len(results)} cells failed: " + "; ".join(
            f"{r.cell.cell_id}: {r.error}" for r in failed))


@app.command()
def report(
    suite: Annotated[str, typer.Argument(help="A suite file (YAML) or the name of one in benchmarks/suites/.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the suite's folders are.")] = Path(
        "runs/bench"),
) -> None:
    """Aggregate a suite's finished cells over seeds: Markdown, CSV and figures, logged to the suite's run."""
    from relforge.bench.runner import report_suite
    from relforge.bench.suite import read_suite
    from relforge.config import ConfigError

    try:
        paths = report_suite(read_suite(_suite_path(suite)), output_dir=output_dir, console=console)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    for p in paths:
        console.print(f"wrote {p}", highlight=False)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="The arm's run folders (one per seed).")],
    baseline: Annotated[list[Path], typer.Option("--baseline", "-b", help="A baseline run folder (repeat: one "
                        "per seed).")],
    metric: Annotated[str, typer.Option("--metric", help="test/micro_f1, test/official_macro_f1 or "
                      "test/accuracy.")] = "test/micro_f1",
    resamples: Annotated[int, typer.Option("--resamples", min=100)] = 10_000,
) -> None:
    """Paired comparison of two arms from their runs' test predictions: Δ, 95% CIs and an approximate
    randomisation p-value (seeds paired by each run's `seed`)."""
    import yaml

    from relforge.bench.compare import Comparison, comparison_markdown, read_predictions
    from relforge.stats import compare_arms, count_metric

    def arm(folders: list[Path]) -> tuple[dict[str, list[list[str]]], list[str], list[list[str]]]:
        out, ids, gold = {}, None, None
        for folder in folders:
            try:
                scored = read_predictions(folder)
                cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) if (
                    folder / "config.yaml").exists() else {}
            except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
                _fail(str(exc))
            seed = str((cfg or {}).get("seed", folder.name))
            if seed in out:
                _fail(f"{folder}: a second run with seed {seed} in one arm; give one run per seed")
            out[seed], ids, gold = scored.predictions, scored.ids, scored.gold
        return out, ids, gold

    a, ids_a, gold = arm(runs)
    b, ids_b, _ = arm(baseline)
    if ids_a != ids_b:
        _fail("the two arms were not scored on the same test examples (their prediction ids differ)")
    try:
        result = compare_arms(gold, a, b, count_metric(metric), n_resamples=resamples)
    except ValueError as exc:
        _fail(str(exc))
    result.metric = metric
    typer.echo(comparison_markdown([Comparison(", ".join(str(r) for r in runs), ", ".join(str(r) for r in baseline),
                                               result)], [], resamples=resamples), nl=False)


@app.command()
def quickstart(
    data_dir: DataDirOption = None,
    output_dir: Annotated[Path, typer.Option("--output-dir")] = Path("runs/bench"),
) -> None:
    """Train and compare every method on the embedded data set (the quickstart suite)."""
    bench("quickstart", None, data_dir=data_dir, output_dir=output_dir, dry_run=False, shard=None, rerun=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option("--port", help="The port to serve on.")] = 5000,
    workers: Annotated[int, typer.Option("--workers", help="Web server worker processes.")] = 1,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="Default: $MLFLOW_TRACKING_URI, "
                            "else sqlite:///mlflow.db in this folder.")] = None,
    host: Annotated[str, typer.Option("--host", help="The address to bind; 0.0.0.0 serves other machines "
                    "(a cluster's nodes), with no authentication: only on a trusted network.")] = "127.0.0.1",
    artifact_root: Annotated[Optional[str], typer.Option("--artifact-root", help="Where artifacts go (a folder "
                             "every node mounts, s3://...); default: mlartifacts/ beside a SQLite store.")] = None,
    allowed_hosts: Annotated[Optional[str], typer.Option("--allowed-hosts", help="Host headers the server answers "
                             "(MLflow refuses others against DNS rebinding), e.g. login1.cluster,10.1.*; default "
                             "with --host beyond 127.0.0.1: this machine's names and private addresses.")] = None,
) -> None:
    """Start the MLflow UI on 127.0.0.1 for the run store (the server and its workers stop with this command:
    Ctrl-C, SIGTERM or SIGHUP)."""
    import signal
    import subprocess

    from relforge.tracking.mlflow_tracker import default_tracking_uri
    from relforge.tracking.server import server_command, server_env, stop_process_group

    uri = tracking_uri or default_tracking_uri()
    cmd = server_command(uri, host=host, port=port, workers=workers, artifacts_destination=artifact_root,
                         allowed_hosts=allowed_hosts)
    if host == "127.0.0.1":
        console.print(f"MLflow UI for {uri} on http://127.0.0.1:{port} (Ctrl-C to stop)", highlight=False)
    else:
        console.print(f"MLflow tracking server for {uri} on {host}:{port}; clients: "
                      f"export MLFLOW_TRACKING_URI=http://$(hostname):{port} (Ctrl-C to stop)", highlight=False)
    env = server_env()
    # the server (mlflow, then uvicorn and its workers) gets a process group of its own, which is ended
    # as a whole when this command ends, however it ends
    server = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        stop_process_group(server.pid, process=server)

    def on_signal(signum: int, _frame: object) -> None:
        stop()
        raise typer.Exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        stop()
    raise typer.Exit(code)


# the same command under the name a sweep's users look for: the tracking server every cell of a sweep
# logs through (`relforge bench --executor ...`); with --host 0.0.0.0 for a cluster's nodes
app.command("server", help="Start the MLflow tracking server (and UI) for the run store: what the cells of a "
            "sweep on several processes or machines log through. Binds 127.0.0.1 unless --host says otherwise; "
            "stops with this command.")(ui)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (configuration, data, files, a plugin
    that is not installed, a damaged checkpoint): shown as one line, exit 2."""
    from relforge.data.errors import DataError
    from relforge.engine.trainer import NonFiniteLossError
    from relforge.registry import RegistryError
    from relforge.validation import ConfigError, UserFacingError

    errors: list[type[BaseException]] = [ConfigError, UserFacingError, DataError, RegistryError, NonFiniteLossError,
                                         OSError, UnicodeDecodeError, json.JSONDecodeError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    errors += [HfHubHTTPError, LocalTokenNotFoundError]  # a Hub push without a login, a repository not yours
    from mlflow.exceptions import MlflowException

    errors.append(MlflowException)  # a tracking server that is down or refuses us (MLFLOW_TRACKING_URI)
    return tuple(errors)


def main(argv: list[str] | None = None) -> None:
    """The console script: typer's app, with every user error as one line
    (``error: ...``) and exit code 2; ``--debug`` (anywhere on the command
    line) or ``RELFORGE_DEBUG=1`` shows the traceback instead. ``--quiet``
    / ``-q`` (anywhere) hides progress (:mod:`relforge.progress`)."""
    import os

    from relforge import progress

    global DEBUG
    args = list(sys.argv[1:] if argv is None else argv)
    DEBUG = "--debug" in args or os.environ.get("RELFORGE_DEBUG", "") not in ("", "0")
    if "--quiet" in args or "-q" in args:
        progress.configure(quiet=True)
    args = [a for a in args if a not in ("--debug", "--quiet", "-q")]
    try:
        app(args=args, prog_name="relforge")
    except _user_errors() as exc:
        if DEBUG:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        prefix = type(exc).__name__ + ": " if isinstance(exc, OSError) else ""
        if type(exc).__module__.startswith("mlflow"):
            from relforge.tracking.mlflow_tracker import default_tracking_uri

            prefix = f"MLflow ({default_tracking_uri()}): "
        err_console.print(f"[bold red]error:[/] {prefix}{text} (--debug shows the traceback)", highlight=False,
                          soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
