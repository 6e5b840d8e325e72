"""Constants shared by the dense-transfer tests (a module of its own: `conftest` is not importable by name)."""

ARCH = "rils_vit_test_patch8"  # 32 px, patch 8 (a 4 x 4 grid), width 32, 2 blocks
