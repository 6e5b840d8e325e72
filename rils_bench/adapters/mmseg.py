"""Registers the dense-transfer parts in mmseg's registries; configs import it through `custom_imports`.

The mmseg twin of `rils_bench.adapters.mmdet`: the same backbone and optimizer constructor classes, registered
here without importing mmdet. UperNet's neck is mmseg's own `MultiLevelNeck`.
"""

from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from rils_bench.adapters.backbone import RILSViT
from rils_bench.adapters.layer_decay import LayerDecayOptimWrapperConstructor

MODELS.register_module(module=RILSViT)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor)
