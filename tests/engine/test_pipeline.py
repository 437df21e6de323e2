"""End to end: train, evaluate, save, load and predict; MLflow receives the run."""
from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from relforge.cli import app
from relforge.config import load_config
from relforge.engine.extractor import Extractor
from relforge.engine.pipeline import train_run

SMALL = ["data.dataset.train_size=48", "data.dataset.dev_size=12", "data.dataset.test_size=12",
         "train.batch_size=8", "train.eval_batch_size=16", "model.max_source_length=48", "train.log_every=1"]


def config(method, backbone, *extra):
    return load_config([], [f"method={method}", "data.dataset=quickstart", f"model.backbone={backbone}",
                            *SMALL, *extra])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(tracking_uri=uri)


def test_generative_baseline_trains_evaluates_logs_and_round_trips(tiny_t5_dir, tmp_path, store):
    cfg = config("generative_ce", tiny_t5_dir, "train.epochs=4", "train.learning_rate=3e-3",
                 "decoder.num_beams=2", "tracking.experiment=pipeline-test")
    out = train_run(cfg, output_dir=tmp_path / "run", progress=False)
    assert out.model_dir == tmp_path / "run" / "best"
    assert {"micro_f1", "precision", "recall"} <= set(out.test_metrics)
    # the training loss fell
    run = store.get_run(out.tracking["run_id"])
    losses = [m.value for m in store.get_metric_history(run.info.run_id, "train/loss")]
    steps = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())["global_step"]
    # one training feature per gold relation (pairs with two relations count twice)
    from relforge.data.loading import load_data

    features = sum(max(1, len(e.relations)) for e in load_data(cfg.run.data).splits["train"])
    assert features > 48 and steps == 4 * -(-features // 8) and len(losses) == steps
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    # params, tags, metrics and artifacts
    assert run.data.params["method"] == "generative_ce"
    assert run.data.params["decoder.name"] == "relforge.trie-beam"
    tags = run.data.tags
    assert tags["method"] == "generative_ce" and tags["dataset"] == "quickstart" and tags["seed"] == "42"
    assert tags["backbone"] == str(tiny_t5_dir) and "plugin.cptuning" in tags and "git_commit" in tags
    assert run.data.metrics["data/train_examples"] == 48
    # the splits are the run's dataset inputs, with digests (MLflow's Dataset column)
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "dev", "test"} and inputs["test"].name == "quickstart/test"
    assert len(inputs["train"].digest) == 12 and inputs["train"].digest != inputs["test"].digest
    assert "test/micro_f1" in run.data.metrics and "dev/micro_f1" in run.data.metrics
    arts = {a.path for a in store.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "predictions", "reports"} <= arts
    reports = {a.path for a in store.list_artifacts(run.info.run_id, "reports")}
    assert reports == {"reports/per-label-test.csv", "reports/confusion-test.png"}
    # the saved model predicts what the run predicted
    saved = read_jsonl(tmp_path / "run" / "predictions-test.jsonl")
    ex = Extractor.from_pretrained(out.model_dir, device="cpu")
    from relforge.data.loading import load_data

    test = load_data(cfg.run.data).splits["test"]
    again = ex.predict(test)
    assert [r["relations"] for r in again] == [r["prediction"] for r in saved]
    assert set(ex.labels) == {"no_relation", "born_in", "lives_in", "works_for", "founded", "located_in"}
    # a seq2seq model quantised to int8 still scores every example over its labels (issue 20)
    q_rows = Extractor.from_pretrained(out.model_dir, device="cpu", quantize="int8").predict(test)
    assert len(q_rows) == len(test) and all(set(r["scores"]) <= set(ex.labels) and r["scores"] for r in q_rows)
    from relforge.validation import InputError

    with pytest.raises(InputError, match="not an encoder model"):  # its decoding loop is not exported
        Extractor.from_pretrained(out.model_dir, device="cpu", runtime="onnx")


def test_a_model_selected_before_the_last_step_is_loaded_from_best_for_test(tiny_t5_dir, tmp_path, store,
                                                                            monkeypatch):
    """The selected model is not the one in memory (a dev metric that never improves after the first
    evaluation selects epoch 1 of 2): test scores the saved best/, and the run's predictions are its."""
    import relforge.engine.build as build

    loads = []
    real = build.load_saved
    monkeypatch.setattr(build, "load_saved", lambda *a, **k: (loads.append(a[0]), real(*a, **k))[1])
    cfg = config("generative_ce", tiny_t5_dir, "train.epochs=2", "train.select_metric=multi_pairs")
    out = train_run(cfg, output_dir=tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["best_step"] < state["global_step"] and loads == [tmp_path / "run" / "best"]
    saved = read_jsonl(tmp_path / "run" / "predictions-test.jsonl")
    from relforge.data.loading import load_data

    again = Extractor.from_pretrained(out.model_dir, device="cpu").predict(load_data(cfg.run.data).splits["test"])
    assert [r["relations"] for r in again] == [r["prediction"] for r in saved]


def test_threshold_tuned_on_dev_is_logged_saved_and_used_for_test(tiny_t5_dir, tmp_path, store):
    cfg = config("generative_ce", tiny_t5_dir, "train.epochs=2", "train.learning_rate=3e-3",
                 "decoder.name=relforge.exact", "decision.mode=threshold", "decision.threshold=0.9",
                 "decision.tune_on_dev=true", "tracking.experiment=pipeline-tune")
    out = train_run(cfg, output_dir=tmp_path / "run", progress=False)
    metrics = store.get_run(out.tracking["run_id"]).data.metrics
    t = metrics["dev/tuned_threshold"]
    assert 0 < t <= 1 and metrics["dev/tuned_micro_f1"] >= metrics["dev/untuned_micro_f1"]
    # the outcome carries them too (a suite's result.json and comparison table read them there)
    assert out.logged == {k: pytest.approx(metrics[k]) for k in
                          ("dev/tuned_threshold", "dev/tuned_micro_f1", "dev/untuned_micro_f1")}
    # recorded in the saved model's configuration, so a reload decides with it
    meta = json.loads((out.model_dir / "relforge.json").read_text())
    assert meta["config"]["decision"]["dev_threshold"] == pytest.approx(t)
    ex = Extractor.from_pretrained(out.model_dir, device="cpu")
    assert ex.resolved.run.decision.dev_threshold == pytest.approx(t)
    from relforge.data.loading import load_data
    from relforge.engine.decision import decide

    saved = read_jsonl(tmp_path / "run" / "predictions-test.jsonl")
    test = load_data(cfg.run.data).splits["test"]
    assert [r["relations"] for r in ex.predict(test)] == [r["prediction"] for r in saved]
    # and test was decided at the tuned threshold, not the configured 0.9
    rankings = ex.model.rank(test)
    tuned = [sorted(decide(r, ex.model.no_relation, ex.resolved.run.decision)) for r in rankings]
    assert tuned == [sorted(r["prediction"]) for r in saved]


def test_threshold_tuning_without_dev_fails_before_training(tiny_t5_dir, tmp_path, store):
    cfg = config("generative_ce", tiny_t5_dir, "decision.mode=threshold", "decision.tune_on_dev=true",
                 "data.dev_split=null", "tracking.experiment=pipeline-tune-nodev")
    with pytest.raises(ValueError, match="tune_on_dev needs a dev split"):
        train_run(cfg, output_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_classifier_baseline_learns_and_predict_cli_round_trips(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = config("marker_classifier", tiny_bert_dir, "train.epochs=3", "train.learning_rate=1e-3",
                 "tracking.trackers=[]", "options.llm.api_key=sk-do-not-save")
    out = train_run(cfg, output_dir=tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["global_step"] == 18 and state["finished"]
    assert "sk-do-not-save" not in (out.model_dir / "relforge.json").read_text()
    saved_cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved_cfg["template"]["name"] == "relforge.typed_markers"
    records = [{"id": "a", "text": "Kalo Veri was born in Tormont .", "head": {"start": 0, "end": 9, "type": "PER"},
                "tail": {"start": 22, "end": 29, "type": "LOC"}},
               {"id": "b", "tokens": ["Sana", "Labs", "is", "based", "in", "Ulford", "."],
                "head": {"token_start": 0, "token_end": 2, "type": "ORG"},
                "tail": {"token_start": 5, "token_end": 6, "type": "LOC"}}]
    stdin = "".join(json.dumps(r) + "\n" for r in records)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", "-", "--output", "-"], input=stdin)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and rows[1]["head"] == "Sana Labs"
    extractor = Extractor.from_pretrained(out.model_dir, device="cpu")
    python_rows = extractor.predict(records)
    assert [r["relations"] for r in rows] == [r["relations"] for r in python_rows]
    # issue 20: length-sorted batches answer in input order with the input-order answers
    many = [{**records[i % 2], "id": f"r{i}", "text": records[0]["text"] + " ." * (i % 7)} if i % 2 == 0
            else {**records[1], "id": f"r{i}"} for i in range(20)]
    bucketed, in_order = extractor.predict(many, batch_size=4), extractor.predict(many, batch_size=4, by_length=False)
    assert [r["id"] for r in bucketed] == [f"r{i}" for i in range(20)]
    assert [r["relations"] for r in bucketed] == [r["relations"] for r in in_order]
    for x, y in zip(bucketed, in_order):
        assert x["scores"].keys() == y["scores"].keys()
        assert all(abs(x["scores"][k] - y["scores"][k]) < 1e-4 for k in x["scores"])
    # dynamic int8 quantisation: linear layers replaced, the same rows (labels it knows), on the CPU only
    quantized = Extractor.from_pretrained(out.model_dir, device="cpu", quantize="int8")
    def int8_layers(model):
        return sum(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules())

    assert int8_layers(quantized.model) > 0 and int8_layers(extractor.model) == 0
    q_rows = quantized.predict(records)
    assert [r["id"] for r in q_rows] == ["a", "b"] and all(set(r["relations"]) <= set(quantized.labels)
                                                         for r in q_rows)
    from relforge.validation import InputError

    with pytest.raises(InputError, match="quantized .* cannot be saved"):
        quantized.save_pretrained(tmp_path / "q")
    with pytest.raises(InputError, match="only int8"):
        Extractor.from_pretrained(out.model_dir, device="cpu", quantize="int4")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", "-", "--output", "-", "--quantize",
                                   "int8", "--window", "1"], input=stdin)
    assert res.exit_code == 0 and [json.loads(x)["id"] for x in res.stdout.splitlines()] == ["a", "b"]
    # issue 20: the encoder on ONNX Runtime: exported once (cached by the weights' digest), the same rows
    from relforge.engine import onnx_runtime

    if onnx_runtime.missing_dependency() is not None:  # relforge[onnx] not installed: a one-line refusal
        with pytest.raises(InputError, match=r"relforge\[onnx\]"):
            Extractor.from_pretrained(out.model_dir, device="cpu", runtime="onnx")
    else:
        monkeypatch.setenv("RELFORGE_ONNX_CACHE", str(tmp_path / "onnx"))
        on_ort = Extractor.from_pretrained(out.model_dir, device="cpu", runtime="onnx")
        assert isinstance(on_ort.model.encoder, onnx_runtime.OnnxEncoder)
        assert on_ort.model.encoder.path.is_relative_to(tmp_path / "onnx")
        for x, y in zip(on_ort.predict(many, batch_size=4), bucketed):
            assert x["relations"] == y["relations"] and x["scores"].keys() == y["scores"].keys()
            assert all(abs(x["scores"][k] - y["scores"][k]) < 1e-4 for k in x["scores"])
        with pytest.raises(InputError, match="ONNX Runtime .* cannot be saved"):
            on_ort.save_pretrained(tmp_path / "o")
        with pytest.raises(InputError, match="do not combine"):
            Extractor.from_pretrained(out.model_dir, device="cpu", runtime="onnx", quantize="int8")

        def no_export(*args, **kwargs):
            raise AssertionError("exported again")

        monkeypatch.setattr(onnx_runtime, "export_encoder", no_export)  # the CLI's load reads the cached export
        res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", "-", "--output", "-", "--runtime",
                                       "onnx"], input=stdin)
        assert res.exit_code == 0, res.output
        assert [json.loads(x)["relations"] for x in res.stdout.splitlines()] == [r["relations"] for r in python_rows]
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", "-", "--runtime", "tensorrt"],
                             input=stdin)
    assert res.exit_code == 2 and "--runtime 'tensorrt'" in res.output
    # evaluate on a JSON-lines file in the generic format
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({**r, "relations": ["born_in"] if r["id"] == "a" else ["located_in"]}) + "\n"
                            for r in records))
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(gold),
                                   "--output", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert "micro_f1" in res.stdout and len(read_jsonl(tmp_path / "p.jsonl")) == 2
    # issue 21: progress as plain lines when stderr is not a terminal (here: every advance), none with quiet
    monkeypatch.setenv("RELFORGE_PROGRESS_INTERVAL", "0")
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(gold)])
    assert res.exit_code == 0 and "progress: evaluate test 2/2 (100%)" in res.output, res.output
    assert "progress: evaluate test done, 2 examples in" in res.output and "progress:" not in res.stdout
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", str(gold), "--output", "-"])
    assert res.exit_code == 0 and "progress: predict 2/2 (100%)" in res.output
    monkeypatch.setenv("RELFORGE_QUIET", "1")
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(gold)])
    assert res.exit_code == 0 and "micro_f1" in res.stdout and "progress:" not in res.output
    monkeypatch.delenv("RELFORGE_QUIET")
    monkeypatch.delenv("RELFORGE_PROGRESS_INTERVAL")
    # issue 19: gold labels the model was not trained on are checked before scoring
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps({**r, "relations": ["born_in"] if r["id"] == "a" else ["sued_by"]}) + "\n"
                           for r in records))
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(odd)])
    assert res.exit_code == 2 and "sued_by (1)" in res.output and "--unknown-labels" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(odd), "--unknown-labels", "ignore"])
    assert res.exit_code == 0 and "left out 1 example(s)" in res.output and "test (1 examples)" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(odd),
                                   "--unknown-labels", "as-no-relation"])
    assert res.exit_code == 0 and "scored as no relation: sued_by (1)" in res.output
    # prediction does not need gold labels at all, known or not
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", str(odd), "--output", "-"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 2
    # several relations on a pair: the multi-label metric is chosen from the data, and said
    multi = tmp_path / "multi.jsonl"
    multi.write_text("".join(json.dumps({**r, "relations": ["born_in", "located_in"] if r["id"] == "a"
                                         else ["located_in"]}) + "\n" for r in records))
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(multi)])
    assert res.exit_code == 0 and "metric: multilabel" in res.output and "multi_micro_f1" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(out.model_dir), "--data", str(multi), "--metric", "micro_f1"])
    assert res.exit_code == 2 and "--metric" in res.output
    # an unknown data set: one line, exit code 2 (it was a RegistryError traceback)
    from relforge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(out.model_dir), "--data", "nosuchset"])
    assert exit_.value.code == 2


def test_train_cli_reports_bad_config_and_missing_model(tmp_path):
    res = CliRunner().invoke(app, ["train", "method=generative_ce", "train.epochz=1"])
    assert res.exit_code == 2 and "train.epochz: unknown key" in res.output
    res = CliRunner().invoke(app, ["predict", str(tmp_path)])
    assert res.exit_code == 2 and "neither a model folder" in res.output


def test_a_reused_run_folder_with_another_configuration_is_refused(tiny_bert_dir, tmp_path):
    """Issue 19: the second command used to resume the first run and report
    its model under the new settings."""
    base = ["train", "method=marker_classifier", "data.dataset=quickstart", f"model.backbone={tiny_bert_dir}",
            "data.dataset.train_size=16", "data.dataset.dev_size=4", "data.dataset.test_size=4",
            "model.max_source_length=48", "tracking.trackers=[]", "--output-dir", str(tmp_path / "X")]
    res = CliRunner().invoke(app, [*base, "train.epochs=1"])
    assert res.exit_code == 0, res.output
    before = (tmp_path / "X" / "config.yaml").read_text()
    res = CliRunner().invoke(app, [*base, "train.epochs=3", "train.learning_rate=1e-3"])
    assert res.exit_code != 0
    assert "another configuration" in res.output and "train.epochs: 1 -> 3" in res.output
    assert "train.learning_rate" in res.output and "--no-resume" in res.output
    assert (tmp_path / "X" / "config.yaml").read_text() == before  # nothing of the old run was touched
    # the same configuration resumes (the run finished: nothing left to train), --no-resume starts afresh
    assert CliRunner().invoke(app, [*base, "train.epochs=1"]).exit_code == 0
    res = CliRunner().invoke(app, [*base, "train.epochs=3", "--no-resume"])
    assert res.exit_code == 0, res.output
    assert "epochs: 3" in (tmp_path / "X" / "config.yaml").read_text()


def test_a_planted_secret_is_nowhere_in_the_run_folder_artifacts_or_the_store(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=1", "data.dataset.train_size=16",
                 "options.llm.base_url=https://user:PLANTED-1@host.example/v1?api_key=PLANTED-2",
                 "options.llm.api_key=PLANTED-3", "options.llm.api_key_env=MY_KEY_VARIABLE",
                 "options.auth_token=PLANTED-4", "tracking.experiment=secrets")
    train_run(cfg, output_dir=tmp_path / "run", progress=False)
    seen = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and b"PLANTED" in path.read_bytes():
            seen.append(str(path))
    assert not seen, seen
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["options"]["llm"]["api_key_env"] == "MY_KEY_VARIABLE"  # a variable's name is kept


def test_predict_streams_names_bad_lines_and_stops_or_skips(tiny_bert_dir, tmp_path):
    cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=1", "data.dataset.train_size=16",
                 "tracking.trackers=[]")
    train_run(cfg, output_dir=tmp_path / "run", progress=False)
    good = {"text": "Kalo Veri was born in Tormont .", "head": {"start": 0, "end": 9, "type": "PER"},
            "tail": {"start": 22, "end": 29, "type": "LOC"}}
    lines = [json.dumps({**good, "id": f"g{i}"}) for i in range(5)]
    lines.insert(3, '{"id": "broken", "text": ')  # line 4: not JSON
    lines.insert(5, json.dumps({"id": "nohead", "text": "x"}))  # line 6: no head
    lines.append(json.dumps({**good, "id": "same", "tail": good["head"]}))  # identical spans
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(src), "-o", str(out),
                                   "--batch-size", "2"])
    assert res.exit_code == 2 and f"{src}:4: not valid JSON" in res.output
    assert "3 prediction(s) written" in res.output
    assert [r["id"] for r in read_jsonl(out)] == ["g0", "g1", "g2"]  # what came before is kept
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(src), "-o", str(out),
                                   "--batch-size", "2", "--on-error", "skip"])
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in read_jsonl(out)] == ["g0", "g1", "g2", "g3", "g4", "same"]
    assert "skipped 2 bad line(s)" in res.output and f"{src}:4" in res.output
    assert "1 record(s) have overlapping head and tail spans" in res.output
    # a missing file, and a file that is not UTF-8: one line each, exit code 2
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "no such file" in res.output
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes((lines[0] + "\n").encode() + json.dumps({**good, "id": "é"}).encode("latin-1")
                      .replace(b"\\u00e9", "é".encode("latin-1")) + b"\n")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(latin), "-o", str(out)])
    assert res.exit_code == 2 and f"{latin}:2: not UTF-8" in res.output and "1 prediction(s) written" in res.output
