"""`rils-bench convert`: round trips into timm and the mmdet / mmseg backbone, and the key report."""

from __future__ import annotations

import pytest
import torch
from dense_testing import ARCH

from rils_bench.adapters.backbone import RILSViT
from rils_bench.adapters.convert import convert_checkpoint, target_model
from rils_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rils_bench.cli import main

VISUAL = "encoder.visual."


def _run_cli(argv: list[str]) -> int:
    """`rils-bench <argv>` through the console script's own entry point (UserError -> one line, exit 2)."""
    return main(argv)


def test_timm_round_trip_gives_the_encoder_features(exported, tmp_path):
    path, encoder = exported
    report = convert_checkpoint(path, to="timm", out=tmp_path / "timm.pth")
    assert report.ok and report.n_tensors == 30 and report.n_dropped == len(load_checkpoint(path)["state_dict"]) - 30
    state = torch.load(tmp_path / "timm.pth", weights_only=True)
    model = target_model("timm", encoder.config).eval()
    model.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), encoder.forward_features(images))


@pytest.mark.parametrize("target", ["mmdet", "mmseg"])
def test_mm_round_trip_keeps_every_tensor_under_backbone(exported, tmp_path, target):
    path, encoder = exported
    report = convert_checkpoint(path, to=target, out=tmp_path / f"{target}.pth")
    payload = torch.load(report.out, weights_only=True)  # tensor-only: no pickled objects
    source = {k.removeprefix(VISUAL): v for k, v in load_checkpoint(path)["state_dict"].items() if k.startswith(VISUAL)}
    assert sorted(payload["state_dict"]) == sorted(f"backbone.{k}" for k in source)
    for key, value in source.items():
        assert torch.equal(payload["state_dict"][f"backbone.{key}"], value)
    assert payload["meta"]["arch"] == ARCH and payload["meta"]["target"] == target
    backbone = RILSViT(ARCH, out_indices="last", init_cfg=dict(type="Pretrained", checkpoint=str(report.out)))
    backbone.init_weights()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = encoder.get_intermediate_layers(images, 1)[0]
        assert torch.equal(backbone.eval()(images)[0].flatten(2).transpose(1, 2), expected)


def test_key_report_lists_every_missing_and_unexpected_key(exported, tmp_path, capsys):
    path, _ = exported
    payload = load_checkpoint(path)
    state = dict(payload["state_dict"])
    del state[VISUAL + "norm.bias"], state[VISUAL + "blocks.0.norm1.weight"]
    state[VISUAL + "head.weight"] = torch.zeros(3, 32)
    damaged = tmp_path / "damaged.pth"
    save_checkpoint(damaged, state, payload["meta"])
    report = convert_checkpoint(damaged, to="timm", out=tmp_path / "out.pth")
    assert report.missing == ["blocks.0.norm1.weight", "norm.bias"]  # in model order
    assert report.unexpected == ["head.weight"] and not report.ok

    assert _run_cli(["convert", str(damaged), "--to", "mmdet", "--out", str(tmp_path / "mm.pth")]) == 1
    printed = capsys.readouterr().out
    # The one key report format (rils_bench.checkpoint.KeyReport): counts on the summary line, then a line per key.
    assert "missing 2, unexpected 1, shape-mismatched 0" in printed
    assert "  missing key: blocks.0.norm1.weight\n  missing key: norm.bias\n" in printed
    assert "  unexpected key: head.weight" in printed


def test_refuses_a_checkpoint_without_image_encoder(exported, tmp_path):
    path, _ = exported
    payload = load_checkpoint(path)
    text_only = {k: v for k, v in payload["state_dict"].items() if not k.startswith(VISUAL)}
    bad = tmp_path / "text_only.pth"
    save_checkpoint(bad, text_only, payload["meta"])
    with pytest.raises(CheckpointError, match="holds no image encoder"):
        convert_checkpoint(bad, to="timm", out=tmp_path / "x.pth")
    assert _run_cli(["convert", str(bad), "--to", "timm", "--out", str(tmp_path / "x.pth")]) == 2
    assert not (tmp_path / "x.pth").exists()


def test_random_spec_and_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run_cli(["convert", f"random:{ARCH}", "--to", "mmseg"]) == 0
    payload = torch.load(tmp_path / f"random_{ARCH}_mmseg.pth", weights_only=True)
    assert payload["meta"]["source"] == f"random:{ARCH}" and len(payload["state_dict"]) == 30


def test_out_onto_the_input_is_refused_and_a_folder_gets_the_default_name(exported, tmp_path, capsys):
    exported, _ = exported
    before = exported.read_bytes()
    assert _run_cli(["convert", str(exported), "--to", "timm", "--out", str(exported)]) == 2
    assert exported.read_bytes() == before  # the checkpoint is untouched
    assert "refusing to overwrite" in capsys.readouterr().err
    folder = tmp_path / "converted"
    folder.mkdir()
    assert _run_cli(["convert", str(exported), "--to", "mmdet", "--out", str(folder)]) == 0
    assert (folder / f"{exported.stem}_mmdet.pth").is_file()


def test_out_onto_an_existing_file_is_refused_unless_forced(exported, tmp_path, capsys):
    exported, _ = exported
    unrelated = tmp_path / "notes.pth"
    unrelated.write_bytes(b"someone else's file")
    argv = ["convert", str(exported), "--to", "timm", "--out", str(unrelated)]
    assert _run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils-bench: error: --out") and "exists" in err and "--force" in err and "\n" not in err
    assert unrelated.read_bytes() == b"someone else's file"
    assert _run_cli([*argv, "--force"]) == 0  # named as the target and forced: replaced by the timm weights
    visual = {k.removeprefix(VISUAL) for k in load_checkpoint(exported)["state_dict"] if k.startswith(VISUAL)}
    assert set(torch.load(unrelated, weights_only=True)) == visual


@pytest.mark.parametrize("where", ["under a file", "a folder name too long"])
def test_out_that_cannot_be_written_is_one_line_and_reads_nothing(where, exported, tmp_path, capsys):
    exported, _ = exported
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    out = a_file / "x.pth" if where == "under a file" else tmp_path / ("d" * 300) / "x.pth"
    assert _run_cli(["convert", str(exported), "--to", "mmdet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils-bench: error: --out") and "\n" not in err, err
    assert a_file.read_text() == "keep me"
