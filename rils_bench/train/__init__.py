"""Pre-training on mmengine: the model wrapper, datasets, hooks and runner that configs refer to.

Configs import this package through `custom_imports`, which registers our classes in mmengine's
registries explicitly; nothing downstream (eval, adapters, report) imports it.
"""

from rils_bench.train import data, hooks, model, runner  # noqa: F401  (registration into mmengine registries)
