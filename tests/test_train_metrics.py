"""Tests for jaxrnn.train.metrics: durable JSON lines, truncation on resume, plots."""

import json

import numpy as np
import pytest

from jaxrnn.train import MetricsLog, ProgressBar, TensorBoardLog, plot_curves, read_metrics


def test_write_converts_scalars_and_counts(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.write({"step": np.int32(3), "loss": np.float32(0.5), "split": "train"})
        log.write({"step": 4, "ok": np.bool_(True)})
        assert log.lines_written == 2
    assert read_metrics(path) == [{"step": 3, "loss": 0.5, "split": "train"},
                                  {"step": 4, "ok": True}]


def test_resume_keeps_exactly_the_checkpointed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": i}) + "\n" for i in range(5)]
    # Two lines written after the checkpoint, then a torn line from a kill -9.
    path.write_text("".join(lines) + '{"step": 5, "lo')
    with MetricsLog(path, resume_lines=3) as log:
        assert log.lines_written == 3
        assert path.read_text() == "".join(lines[:3])
        log.write({"step": 3})
        assert log.lines_written == 4
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2, 3]
    assert path.read_text().endswith("\n")
    assert not path.with_name("metrics.jsonl.tmp").exists()


def test_resume_none_drops_only_a_torn_line_and_zero_starts_empty(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a"')
    with MetricsLog(path) as log:
        assert log.lines_written == 2
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    with MetricsLog(path, resume_lines=0) as log:
        assert log.lines_written == 0
    assert path.read_text() == ""


def test_resume_with_too_few_lines_fails(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match=r"has 1 complete lines but resume_lines=3"):
        MetricsLog(path, resume_lines=3)


def test_plot_tensorboard_and_progress(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for epoch in (1, 2, 3):
            log.write({"step": epoch * 10, "epoch": epoch, "split": "train", "ppl": 300.0 / epoch})
            log.write({"step": epoch * 10, "epoch": epoch, "split": "valid", "ppl": 320.0 / epoch})
    png = plot_curves(path, tmp_path / "plots" / "ppl.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no finite 'acc'"):
        plot_curves(path, tmp_path / "acc.png", key="acc")
    tb = TensorBoardLog(tmp_path / "tb")
    tb.scalars(10, {"ppl": 3.0, "split": "train"}, prefix="train")
    tb.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    bar = ProgressBar(10, initial=2, disable=True)
    bar.update(3)
    bar.set_metrics(loss=1.0, ppl=2.7, tokens_per_sec=1000.0, epoch=0.5)
    bar.close()


def test_logs_without_the_experiments_extra_name_it(tmp_path, monkeypatch, capsys):
    """tensorboardX, matplotlib and tqdm come with the 'experiments' extra: without them the
    metrics file and a hidden bar still work, and what needs one says how to install it."""
    import sys

    for module in ("tensorboardX", "matplotlib.backends.backend_agg", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, module, None)
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.write({"split": "train", "epoch": 1, "ppl": 3.0})
    extra = r"TensorBoardLog needs tensorboardX.*pip install \"jaxrnn\[experiments\]\""
    with pytest.raises(ImportError, match=extra):
        TensorBoardLog(tmp_path / "tb")
    with pytest.raises(ImportError, match=r"plot_curves needs matplotlib.*jaxrnn\[experiments\]"):
        plot_curves(path, tmp_path / "ppl.png")
    with pytest.raises(ImportError, match=r"ProgressBar needs tqdm.*jaxrnn\[experiments\]"):
        ProgressBar(10, disable=False)
    bar = ProgressBar(10, disable=True)  # hidden: no tqdm needed, messages still printed
    bar.update(2)
    bar.set_metrics(loss=1.0)
    bar.write("epoch 1 done")
    bar.close()
    assert "epoch 1 done" in capsys.readouterr().out
