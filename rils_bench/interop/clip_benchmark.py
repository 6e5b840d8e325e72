"""LAION's CLIP_benchmark (PyPI `clip-benchmark`) evaluates rils-bench checkpoints, with no glue code.

Its plug-in point is `clip_benchmark.models.TYPE2FUNC[name] = loader`; `register()` adds `load_rils_bench` under
`rils_bench`, and `python -m rils_bench.interop.clip_benchmark eval --model_type rils_bench --pretrained CKPT ...`
runs CLIP_benchmark's own CLI with it registered (`--pretrained` takes every `--ckpt` spec with a text tower;
`--model` is only a label in CLIP_benchmark's output). `export-wds` writes a rils-bench classification or
retrieval set in CLIP_benchmark's local WebDataset layout (`--dataset wds/NAME --dataset_root DIR`), so its CLI can
run offline on the built-in sets.

Protocol against rils-bench's own zero-shot and retrieval (tests/eval/test_clip_benchmark.py checks that they
agree on the same checkpoint, set and prompts):
- images go through the checkpoint's own evaluation transform (`transform_of`), after conversion to RGB (rils-bench
  reads every file as RGB; CLIP_benchmark's datasets hand over PIL images in their own mode);
- zero-shot: both build a class weight as the renormalised mean of the prompts' normalised text embeddings and take
  the class of highest cosine similarity (CLIP_benchmark multiplies by 100, which changes no argmax);
- retrieval: both rank by cosine similarity; CLIP_benchmark breaks ties by `topk` order, rils-bench counts a tie in
  the query's favour, so the two differ only where embeddings tie exactly;
- numpy: CLIP_benchmark 1.6.2's top-k accuracy fails under numpy 2.4; `register()` mends it (rils_bench.compat);
- precision: CLIP_benchmark runs under `torch.autocast(device)` unless `--no_amp`, i.e. bf16 on a CPU; rils-bench's
  `auto` uses bf16 only where the CPU has it natively (an AVX2-only CPU is ~100x slower in bf16: pass `--no_amp`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from rils_bench import compat
from rils_bench.errors import UserError
from rils_bench.eval.features import transform_of
from rils_bench.eval.metrics import require_text_tower
from rils_bench.models.pretrained import load_pretrained
from rils_bench.models.registry import ImageTextEncoder

MODEL_TYPE = "rils_bench"


def load_rils_bench(
    model_name: str, pretrained: str, cache_dir: str | None = None, device: str | torch.device = "cpu"
) -> tuple[ImageTextEncoder, v2.Compose, Callable[[Sequence[str]], torch.Tensor]]:
    """CLIP_benchmark's loader triple `(model, transform, tokenizer)` for the checkpoint spec `pretrained`.

    The model is the rils-bench encoder itself (its `encode_image` / `encode_text` are CLIP's), in eval mode on
    `device`; the tokenizer is its text tower's own (a `[N, context_length]` tensor). `model_name` and `cache_dir`
    are CLIP_benchmark's arguments and unused: a rils-bench spec names the weights and the architecture.

    Raises:
        UserError: a bad or missing checkpoint, or one without a text tower.
    """
    del model_name, cache_dir
    encoder, info = load_pretrained(pretrained)
    require_text_tower(encoder, info, "CLIP_benchmark")
    transform, _ = transform_of(encoder.config)
    return encoder.to(device).eval(), v2.Compose([v2.RGB(), *transform.transforms]), encoder.tokenize


def register() -> None:
    """Make `--model_type rils_bench` known to CLIP_benchmark (its loader table and the CLI's list of choices),
    with its one incompatibility with the pinned numpy mended (`compat.fix_clip_benchmark_accuracy`)."""
    from clip_benchmark import models

    compat.fix_clip_benchmark_accuracy()
    models.TYPE2FUNC[MODEL_TYPE] = load_rils_bench
    if MODEL_TYPE not in models.MODEL_TYPES:  # the same list object the CLI's `choices` reads
        models.MODEL_TYPES.append(MODEL_TYPE)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rils_bench.interop.clip_benchmark eval|build ...` (CLIP_benchmark's CLI) or `export-wds ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    compat.use_offline_hubs()
    try:
        if argv[:1] == ["export-wds"]:
            from rils_bench.interop.wds_export import main as export_main

            return export_main(argv[1:])
        from clip_benchmark import cli

        register()
        saved, sys.argv = sys.argv, ["clip_benchmark", *argv]
        try:
            cli.main()
        finally:
            sys.argv = saved
        return 0
    except UserError as err:
        print(f"rils-bench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
