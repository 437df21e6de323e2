"""Models that travel: Hub folders with a model card, loaded from a local
folder, from the Hub cache offline, and pushed (the Hub client's upload
replaced by a local copy: no network in tests)."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from relforge.cli import app
from relforge.engine.extractor import Extractor
from relforge.engine.pipeline import train_run
from relforge.validation import InputError
from tests.engine.test_pipeline import config

RECORD = {"id": "a", "text": "Kalo Veri was born in Tormont .", "head": {"start": 0, "end": 9, "type": "PER"},
          "tail": {"start": 22, "end": 29, "type": "LOC"}}


@pytest.fixture(scope="module")
def run_dir(tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "run"
    cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=2", "data.dataset.train_size=16",
                 "tracking.trackers=[]")
    train_run(cfg, output_dir=out, progress=False)
    return out


def test_save_pretrained_writes_a_hub_folder_with_a_card_and_loads_back(run_dir, tmp_path):
    ex = Extractor.from_pretrained(run_dir, device="cpu")
    result = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert ex.results and ex.results["test/micro_f1"] == pytest.approx(result["test/micro_f1"])
    hub = tmp_path / "hub"
    ex.save_pretrained(hub, model_card_kwargs={"repo_id": "someone/kalo-re"})
    names = {p.name for p in hub.iterdir()}
    assert {"README.md", "relforge.json", "results.json", "config.json", "model.safetensors"} <= names
    assert json.loads((hub / "config.json").read_text())["model_type"] == "bert"  # the backbone's, not the mixin's
    assert {oct(p.stat().st_mode & 0o044) for p in hub.iterdir()} == {"0o44"}  # readable by others
    card = (hub / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: relforge" in front and "relation-extraction" in front and "marker_classifier" in front
    assert f"| test/micro_f1 | {result['test/micro_f1']:.4f} |" in card
    assert 'Extractor.from_pretrained("someone/kalo-re")' in card and "method: marker_classifier" in card
    back = Extractor.from_pretrained(hub, device="cpu")
    assert back.predict([RECORD]) == ex.predict([RECORD]) and back.results == ex.results


def _cache(hub, cache, repo_id, revision="0123456789abcdef0123456789abcdef01234567"):
    """A Hub cache holding ``hub`` as ``repo_id``'s main revision (the layout
    huggingface_hub writes: refs/main -> snapshots/<revision>/)."""
    base = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(hub, base / "snapshots" / revision)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)


def test_from_pretrained_reads_a_repository_from_the_hub_cache_offline(run_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ex = Extractor.from_pretrained(run_dir, device="cpu")
    ex.save_pretrained(tmp_path / "hub")
    _cache(tmp_path / "hub", tmp_path / "cache", "someone/kalo-re")
    back = Extractor.from_pretrained("someone/kalo-re", cache_dir=tmp_path / "cache", device="cpu")
    assert back.predict([RECORD]) == ex.predict([RECORD])
    with pytest.raises(InputError, match="not in the Hub cache"):
        Extractor.from_pretrained("someone/other", cache_dir=tmp_path / "cache")
    # the CLI: a repository id through the cache (HF_HUB_CACHE), a missing one as one line with exit code 2
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(RECORD) + "\n")
    res = CliRunner().invoke(app, ["predict", "someone/kalo-re", "-i", str(src), "-o", "-"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["relations"] == ex.predict([RECORD])[0]["relations"]
    from relforge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["predict", "someone/other", "-i", str(src)])
    assert exit_.value.code == 2


def test_push_uploads_the_model_card_and_weights(run_dir, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs.get("private"))

        class Url(str):
            pass

        url = Url(f"https://huggingface.co/{repo_id}")
        url.repo_id = repo_id
        return url

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload"] = repo_id
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    res = CliRunner().invoke(app, ["push", str(run_dir), "someone/kalo-re", "--private"])
    assert res.exit_code == 0, res.output
    assert calls == {"create": ("someone/kalo-re", True), "upload": "someone/kalo-re"}
    up = tmp_path / "uploaded"
    assert 'from_pretrained("someone/kalo-re")' in (up / "README.md").read_text()
    assert Extractor.from_pretrained(up, device="cpu").predict([RECORD])[0]["relations"]
    # --local writes the same files without uploading
    res = CliRunner().invoke(app, ["push", str(run_dir), "someone/kalo-re", "--local", str(tmp_path / "here")])
    assert res.exit_code == 0 and (tmp_path / "here" / "README.md").is_file()
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == sorted(p.name for p in up.iterdir())
