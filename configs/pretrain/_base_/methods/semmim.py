# SemMIM (Liu et al., LREC-COLING 2024): L = L_ITC + global_weight L_global + mim_weight L_MIM. No code was
# published; what the abstract leaves open is chosen in rils_bench/methods/semmim.py (DINO / iBOT heads, ALBEF-style
# fusion) and every choice is switchable here:
# - text_guided_masking: mask a Gumbel-top-k sample of the patches' relevance to the caption (cosine of the momentum
#   encoder's projected patch token with the caption embedding) at mask_temperature; False = MAE's random masking.
# - text_injection: a cross-attention block fuses caption tokens into the decoder, and its momentum copy into the
#   teacher's patch tokens that become the targets; False = neither.
# - prototypes / head_hidden / head_bottleneck: the learnable K-dim space (DINO head; cosine to K prototypes).
# - teacher_temp / student_temp / center_momentum: DINO's sharpening and centering of the teacher.
# - momentum: EMA of the teacher (per step; DINO starts at 0.996 for 100s of epochs, short runs need a faster one).
model = dict(
    type="PretrainModel",
    method="semmim",
    method_cfg=dict(
        mask_ratio=0.75,
        text_guided_masking=True,
        mask_temperature=0.1,
        text_injection=True,
        prototypes=1024,
        head_hidden=512,
        head_bottleneck=128,
        teacher_temp=0.04,
        student_temp=0.1,
        center_momentum=0.9,
        momentum=0.99,
        global_weight=1.0,
        mim_weight=1.0,
    ),
)
