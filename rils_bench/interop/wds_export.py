"""`python -m rils_bench.interop.clip_benchmark export-wds`: a rils-bench evaluation set in CLIP_benchmark's local
WebDataset layout, written by CLIP_benchmark's own converters (`clip_benchmark.webdataset_builder`).

A classification set's val split becomes `OUT/<name>/test/*.tar` (CLIP_benchmark's default split name) with
`classnames.txt` and `zeroshot_classification_templates.txt` holding the prompts rils-bench's zero-shot uses:
class names worded as pre-training's captions word them, templates with `{c}` where the worded name goes. A
retrieval set writes one folder per subset (`dataset_type.txt` = retrieval, one caption per image). Then
`... eval --dataset wds/<name> --dataset_root OUT/<name>` evaluates on exactly what rils-bench evaluates on.
Each folder is built beside its destination and moved into place complete, so an interrupted export leaves no
half-written set where an old one was.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rils_bench.errors import UserError
from rils_bench.eval.datasets import resolve_classification, resolve_retrieval
from rils_bench.eval.zeroshot import TEMPLATE_SETS, template_set
from rils_bench.fileio import replace_dir

TASKS = ("zeroshot_classification", "zeroshot_retrieval")


def export_classification(spec: str, out: Path, templates: str = "auto") -> Path:
    """Write the val split of classification set `spec` under `out/<name>`; returns that folder.

    Raises:
        UserError: a bad dataset or template set, or a template that does not format as a `{c}` template.
    """
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    data = resolve_classification(spec)
    chosen, wording, _ = template_set(data.name, templates)
    as_text = [t("{c}") for t in chosen]
    names = [wording(c) for c in data.classnames]
    for template, t in zip(as_text, chosen, strict=True):
        # CLIP_benchmark formats `template.format(c=name)`: it must give rils-bench's own prompt for every class.
        if any(_format(template, n) != t(n) for n in names):
            raise UserError(f"template {template!r} does not format as rils-bench's prompt; it cannot be exported")
    val = data.split("val")
    samples = _Samples([str(p) for p in val.paths], [int(y) for y in val.labels], names, as_text)
    return _build(out / data.name, lambda tmp: convert_dataset(samples, "test", str(tmp), transform=path_to_bytes))


def export_retrieval(spec: str, out: Path) -> list[Path]:
    """Write every subset of retrieval set `spec` under `out/<subset>`; returns those folders.

    Raises:
        UserError: a bad dataset.
    """
    from clip_benchmark.webdataset_builder import convert_retrieval_dataset, path_to_bytes

    folders = []
    for pairs in resolve_retrieval(spec):
        samples = [(str(p), [c]) for p, c in zip(pairs.paths, pairs.captions, strict=True)]
        write = lambda tmp, s=samples: convert_retrieval_dataset(s, "test", str(tmp), transform=path_to_bytes)  # noqa: E731
        folders.append(_build(out / pairs.name, write))
    return folders


class _Samples(list):
    """`(image path, label)` pairs with the `classes` and `templates` that `convert_dataset` writes out."""

    def __init__(self, paths: list[str], labels: list[int], classes: list[str], templates: list[str]) -> None:
        super().__init__(zip(paths, labels, strict=True))
        self.classes, self.templates = classes, templates


def _format(template: str, name: str) -> str | None:
    try:
        return template.format(c=name)
    except (KeyError, IndexError, ValueError):
        return None


def _build(dest: Path, write) -> Path:
    """Run `write(tmp)` on a fresh folder beside `dest`, then swap it in (CLIP_benchmark's writers are not atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its converters print every file they write
            write(tmp)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rils_bench.interop.clip_benchmark export-wds",
        description="write a rils-bench evaluation set in CLIP_benchmark's local WebDataset layout",
    )
    parser.add_argument("dataset", help="classification: a built-in name or imagefolder:PATH; retrieval: "
                        "retrieval, shapes or csv:PATH")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="one folder per set is written under it")
    parser.add_argument("--task", choices=TASKS, default=TASKS[0], help="as CLIP_benchmark names it")
    parser.add_argument("--templates", default="auto", choices=["auto", *TEMPLATE_SETS],
                        help="zero-shot prompts (default auto: as rils-bench zeroshot)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.task == "zeroshot_classification":
        folders = [export_classification(args.dataset, args.out, args.templates)]
    else:
        folders = export_retrieval(args.dataset, args.out)
    for folder in folders:
        print(f"{folder}: --dataset wds/{folder.name} --dataset_root {folder} --task {args.task}")
    return 0
