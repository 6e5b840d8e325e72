"""Registers the dense-transfer parts in mmdet's registries; configs import it through `custom_imports`.

Importing this module imports mmdet, and only mmdet (`rils_bench.adapters.mmseg` is its mmseg twin): the classes
themselves live in `backbone`, `neck` and `layer_decay` and know neither library.
"""

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from rils_bench.adapters.backbone import RILSViT
from rils_bench.adapters.layer_decay import LayerDecayOptimWrapperConstructor
from rils_bench.adapters.neck import LayerNorm2d, SimpleFeaturePyramid

MODELS.register_module(module=RILSViT)
MODELS.register_module(module=SimpleFeaturePyramid)
# ViTDet's conv heads are normalised with "LN2d" (`norm_cfg=dict(type="LN2d")`), which mmcv does not provide.
MODELS.register_module(name="LN2d", module=LayerNorm2d)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor)
