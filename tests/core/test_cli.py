"""The command line: listing, config show, and honest not-implemented commands."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from relforge.cli import app

runner = CliRunner()


def test_plugins_lists_bundled_plugins():
    res = runner.invoke(app, ["plugins"])
    assert res.exit_code == 0, res.output
    for name in ("relforge", "cptuning", "etrag", "tkre"):
        assert name in res.output


def test_plugins_json():
    res = runner.invoke(app, ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert {"relforge", "cptuning", "etrag", "tkre"} <= set(names)
    assert names["cptuning"]["version"] == "0.1.0" and names["cptuning"]["error"] is None
    assert data["errors"] == []


def test_config_show_prints_resolved_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 3\ntrain:\n  epochs: 1\n  learning_rate: ${options.lr}\noptions:\n  lr: 0.01\n")
    res = runner.invoke(app, ["config", "show", str(f), "train.batch_size=2"])
    assert res.exit_code == 0, res.output
    assert "seed: 3" in res.stdout and "batch_size: 2" in res.stdout and "learning_rate: 0.01" in res.stdout


def test_a_config_file_whose_path_holds_equals_signs_is_a_file(tmp_path):
    folder = tmp_path / "cell=nyt-cptuning,seed=13"
    folder.mkdir()
    f = folder / "config.yaml"
    f.write_text("seed: 7\n")
    res = runner.invoke(app, ["config", "show", str(f), "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "seed: 7" in res.stdout and "epochs: 2" in res.stdout


def test_config_show_error_names_key(tmp_path):
    res = runner.invoke(app, ["config", "show", "train.epochz=1"])
    assert res.exit_code == 2
    assert "train.epochz: unknown key" in res.output


def test_help_lists_every_command():
    res = runner.invoke(app, ["--help"])
    for command in ("plugins", "config", "new-plugin", "train", "evaluate", "predict", "bench", "report", "ui",
                    "data", "quickstart"):
        assert command in res.output


def test_new_plugin_refuses_bad_name_clashing_files_and_an_installed_plugin_name(tmp_path):
    res = runner.invoke(app, ["new-plugin", "My-Plugin", "--dir", str(tmp_path / "x")])
    assert res.exit_code == 2 and "lower-case Python identifier" in res.output
    # a folder with other files is fine (a repository's root, say) ...
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    res = runner.invoke(app, ["new-plugin", "ok", "--dir", str(tmp_path / "full")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "full" / "relforge_ok" / "__init__.py").exists()
    # ... but nothing is overwritten
    res = runner.invoke(app, ["new-plugin", "ok", "--dir", str(tmp_path / "full")])
    assert res.exit_code == 2 and "pyproject.toml" in res.output and "nothing was written" in res.output
    # a name an installed plugin has would make every component name ambiguous
    res = runner.invoke(app, ["new-plugin", "cptuning", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 2 and "taken by an installed plugin" in res.output and not (tmp_path / "c").exists()


def test_user_errors_are_one_line_with_exit_code_2_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from relforge.cli import main

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "relforge.json").write_text("{\n")  # a damaged model folder
    (tmp_path / "in.jsonl").write_text("")
    argv = ["predict", str(folder), "--input", str(tmp_path / "in.jsonl")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and "relforge.json" in err and "not valid JSON" in err
    assert "Traceback" not in err
    from relforge.validation import InputError

    with pytest.raises(InputError):
        main([*argv, "--debug"])
    monkeypatch.setenv("RELFORGE_DEBUG", "1")
    with pytest.raises(InputError):
        main(argv)
    monkeypatch.delenv("RELFORGE_DEBUG")
    # an error no command catches (an unknown data set) gets the same treatment
    with pytest.raises(SystemExit) as exit_:
        main(["data", "stats", "nosuchset"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "nosuchset" in err and err.count("\n") == 1
    # a divisor of zero is refused with the configuration, not after training starts
    with pytest.raises(SystemExit) as exit_:
        main(["config", "show", "method=generative_ce", "train.save_every=0"])
    assert exit_.value.code == 2 and "train.save_every" in capsys.readouterr().err
