"""CLIP_benchmark (LAION's suite) evaluates a rils-bench checkpoint through `rils_bench.interop.clip_benchmark`, and
gets rils-bench's own zero-shot top-1 and retrieval recall on the same checkpoint, set and prompts. Both sides run
in fp32 (CLIP_benchmark with amp off, rils-bench with precision fp32)."""

from __future__ import annotations

import json

import pytest
import torch
from clip_benchmark.datasets.builder import image_captions_collate_fn
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from eval_helpers import make_checkpoint
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rils_bench.errors import UserError
from rils_bench.eval.datasets import resolve_classification, resolve_retrieval
from rils_bench.eval.features import ExtractOptions
from rils_bench.eval.retrieval import run_retrieval
from rils_bench.eval.zeroshot import prompts_for, run_zeroshot
from rils_bench.interop.clip_benchmark import load_rils_bench, main, register

FP32 = ExtractOptions(precision="fp32", num_workers=0)


class Files(Dataset):
    """`(transform(image), target)` over files, as CLIP_benchmark's own datasets yield them (PIL in, tensor out)."""

    def __init__(self, paths, targets, transform, classes=()):
        self.paths, self.targets, self.transform = list(paths), list(targets), transform
        self.classes = list(classes)  # CLIP_benchmark reads it (top-5 only with >= 5 classes)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.copy()), self.targets[i]


def test_the_loader_gives_clip_benchmarks_triple(rils_ckpt):
    model, transform, tokenizer = load_rils_bench("ignored", str(rils_ckpt), device="cpu")
    size = model.config["img_size"]
    image = transform(Image.new("L", (50, 30), 128))  # a gray image: converted to RGB, resized, centre-cropped
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    tokens = tokenizer(["a photo of a circle.", "a square"])
    assert tokens.shape == (2, model.config["context_length"]) and tokens.dtype == torch.int64
    with torch.no_grad():
        assert model.encode_image(image[None]).shape == (1, model.embed_dim)
        assert model.encode_text(tokens).shape == (2, model.embed_dim)
    assert not model.training


def test_an_image_only_checkpoint_is_refused(tmp_path):
    mae = make_checkpoint(tmp_path / "mae.pt", method="mae")
    with pytest.raises(UserError, match="text tower"):
        load_rils_bench("ignored", str(mae))
    assert main(["eval", "--model_type", "rils_bench", "--pretrained", str(tmp_path / "missing.pt")]) == 2


@pytest.mark.slow
def test_zero_shot_top1_equals_rils_bench(rils_ckpt):
    register()  # as the CLI does: CLIP_benchmark's accuracy needs its numpy mend
    model, transform, tokenizer = load_rils_bench("ignored", str(rils_ckpt))
    data = resolve_classification("shapes")
    val = data.split("val")
    # The same prompts: CLIP_benchmark takes per-class prompt lists as a dict (its CuPL route), keyed by class name.
    prompts, _ = prompts_for(data.name, data.classnames)
    templates = dict(zip(data.classnames, prompts, strict=True))
    loader = DataLoader(Files(val.paths, val.labels, transform, data.classnames), batch_size=5)
    theirs = zeroshot_classification.evaluate(
        model, loader, tokenizer, list(data.classnames), templates, "cpu", amp=False
    )
    ours = run_zeroshot(ckpt=str(rils_ckpt), dataset="shapes", options=FP32, write=False)["metrics"]
    # Top-5 too: on 8 classes it tests the whole ranking of the class scores, not only the winner.
    assert 100 * theirs["acc1"] == pytest.approx(ours["top1"], abs=0.1)
    assert 100 * theirs["acc5"] == pytest.approx(ours["top5"], abs=0.1)


@pytest.mark.slow
def test_retrieval_recall_at_5_equals_rils_bench(rils_ckpt, tmp_path):
    model, transform, tokenizer = load_rils_bench("ignored", str(rils_ckpt))
    # Exact ties (a caption twice) are ranked differently by the two (see the interop module): both sides read a
    # CSV of the built-in pairs with every caption once.
    (shapes,) = resolve_retrieval("shapes")
    first = {caption: path for path, caption in reversed(list(zip(shapes.paths, shapes.captions, strict=True)))}
    table = tmp_path / "pairs.csv"
    table.write_text("filepath,caption\n" + "".join(f"{p},{c}\n" for c, p in first.items()))
    (pairs,) = resolve_retrieval(f"csv:{table}")
    assert len(pairs.captions) == len(set(pairs.captions)) >= 10
    loader = DataLoader(
        Files(pairs.paths, [[c] for c in pairs.captions], transform), batch_size=5, collate_fn=image_captions_collate_fn
    )
    theirs = zeroshot_retrieval.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5])
    (ours,) = run_retrieval(ckpt=str(rils_ckpt), dataset=f"csv:{table}", options=FP32, write=False)
    for k in (1, 5):
        assert 100 * theirs[f"image_retrieval_recall@{k}"] == pytest.approx(ours["metrics"][f"t2i_R@{k}"], abs=0.1)
        assert 100 * theirs[f"text_retrieval_recall@{k}"] == pytest.approx(ours["metrics"][f"i2t_R@{k}"], abs=0.1)


@pytest.mark.slow
def test_clip_benchmarks_cli_on_an_exported_set_agrees(rils_ckpt, tmp_path):
    """The documented route: export the built-in set, run CLIP_benchmark's CLI with the loader registered."""
    assert main(["export-wds", "shapes", "--out", str(tmp_path / "wds")]) == 0
    out = tmp_path / "result.json"
    argv = ["eval", "--model_type", "rils_bench", "--pretrained", str(rils_ckpt), "--dataset", "wds/shapes",
            "--dataset_root", str(tmp_path / "wds" / "shapes"), "--task", "zeroshot_classification", "--no_amp",
            "--num_workers", "0", "--batch_size", "4", "--output", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    theirs = json.loads(out.read_text())["metrics"]
    ours = run_zeroshot(ckpt=str(rils_ckpt), dataset="shapes", options=FP32, write=False)["metrics"]
    # Top-5 too: on 8 classes it tests the whole ranking of the class scores, not only the winner.
    assert 100 * theirs["acc1"] == pytest.approx(ours["top1"], abs=0.1)
    assert 100 * theirs["acc5"] == pytest.approx(ours["top5"], abs=0.1)


def test_the_exported_prompts_are_rils_benchs(tmp_path):
    assert main(["export-wds", "shapes", "--out", str(tmp_path / "wds")]) == 0
    folder = tmp_path / "wds" / "shapes"
    names = (folder / "classnames.txt").read_text().splitlines()
    templates = (folder / "zeroshot_classification_templates.txt").read_text().splitlines()
    data = resolve_classification("shapes")
    prompts, _ = prompts_for(data.name, data.classnames)
    assert [[t.format(c=n) for t in templates] for n in names] == prompts
    assert (folder / "test" / "nshards.txt").read_text().strip() == "1"
    assert sorted(p.name for p in (tmp_path / "wds").iterdir()) == ["shapes"]  # no temporary folder left
