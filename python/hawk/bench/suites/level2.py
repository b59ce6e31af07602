"""level2: fused operators from the same models as level1 (category ``fused``).

GEMM/conv operands are fp16 with float32 accumulation and epilogue; norms and pure
elementwise fusions are fp32. No vendor reference exists for these ops yet.
"""

from hawk.ir import ops

WORKLOADS = [
    # --- GEMM + epilogue ------------------------------------------------------------------
    ops.gemm_bias_act("gemm_bias_gelu_bert", 64, 1536, 768, "gelu", model="BERT-base FFN up (N scaled 3072->1536)"),
    ops.gemm_bias_act("gemm_bias_residual_bert", 128, 768, 768, "none", residual=True,
                      model="BERT-base attention output dense + residual"),
    ops.gemm_bias_act("gemm_bias_tanh_bert_pooler", 16, 768, 768, "tanh", model="BERT pooler, batch 16"),
    ops.gemm_bias_act("gemm_bias_relu_resnet_fc", 32, 1000, 512, "relu", model="ResNet-18 fc 512->1000 + relu head"),
    ops.swiglu_mlp("swiglu_mlp_llama", 32, 1024, 1024, model="LLaMA-7B SwiGLU gate/up projection (scaled)"),
    # --- attention -------------------------------------------------------------------------
    ops.attention("attention_bert", 12, 128, 64, model="BERT-base self-attention, 12 heads, seq 128"),
    ops.attention("attention_llama_causal", 8, 128, 128, causal=True,
                  model="LLaMA-7B causal attention, 8 of 32 heads, seq 128"),
    ops.scale_mask_softmax("scale_mask_softmax_bert", 12, 128, 128, model="BERT-base attention scores + padding mask"),
    ops.rope("rope_llama", 128, 8, 128, model="LLaMA rotary embedding, 8 heads, seq 128"),
    # --- norms -----------------------------------------------------------------------------
    ops.residual_norm("residual_rmsnorm_llama", "rms", 64, 4096, eps=1e-6, model="LLaMA-7B residual add + RMSNorm"),
    ops.residual_norm("residual_layernorm_bert", "layer", 128, 768, eps=1e-12,
                      model="BERT-base residual add + LayerNorm"),
    ops.norm_linear("layernorm_linear_bert", "layer", 128, 768, 768, eps=1e-12,
                    model="BERT-base LayerNorm + next dense (pre-LN style)"),
    ops.norm_linear("rmsnorm_linear_llama", "rms", 32, 1024, 1024, eps=1e-6,
                    model="LLaMA-7B RMSNorm + q_proj (scaled)"),
    # --- elementwise fusions --------------------------------------------------------------
    ops.swiglu("swiglu_llama", 128, 2752, model="LLaMA-7B silu(gate) * up (11008/4)"),
    ops.bias_gelu("bias_gelu_bert", 128, 3072, model="BERT-base FFN bias + GELU"),
    # --- conv + batch norm + activation ---------------------------------------------------
    ops.conv_bn_act("conv_bn_relu_resnet", 1, 16, 16, 64, 3, 64, act="relu", model="ResNet-18 layer1 conv-BN-ReLU"),
    ops.conv_bn_act("conv_bn_add_relu_resnet", 1, 16, 16, 64, 3, 64, act="relu", residual=True,
                    model="ResNet-18 basic block tail: conv-BN + identity + ReLU"),
    ops.conv_bn_act("dwconv_bn_relu6_mobilenet", 1, 16, 16, 144, 3, 144, act="relu6", depthwise=True,
                    model="MobileNetV2 depthwise 3x3-BN-ReLU6"),
    ops.conv_bn_act("pwconv_bn_relu6_mobilenet", 1, 14, 14, 32, 1, 192, act="relu6",
                    model="MobileNetV2 1x1 expansion-BN-ReLU6"),
]
