import json

import pytest
import yaml

from iqa.report import main


def job(folder, overrides, metrics=None):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_report_groups_splits_and_lists_unfinished_jobs(tmp_path, capsys):
    for i, srcc in enumerate([0.8, 0.9, 0.7]):
        job(tmp_path / str(i), ["data=kadid", f"protocol.split_index={i}"], {"test/srcc": srcc, "params/total": 5})
    job(tmp_path / "3", ["data=koniq", "protocol.split_index=0"], {"test/srcc": 0.5})
    job(tmp_path / "4", ["data=koniq", "protocol.split_index=1"])
    assert main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| data=kadid | test/srcc | 0.8000 | 0.8000 ± 0.1000 | 3 |" in captured.out
    assert "| data=koniq | test/srcc | 0.5000 |" in captured.out and "params/total" not in captured.out
    assert "unfinished" in captured.err and (tmp_path / "report.csv").is_file()


def test_report_on_a_folder_without_finished_jobs(tmp_path, capsys):
    job(tmp_path / "0", ["seed=1"])
    assert main([str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nonexistent"])
def test_report_on_a_missing_folder(tmp_path, bad, capsys):
    assert main([str(tmp_path / bad)]) == 1
