"""level1: single operators with shapes from real models (scaled for a quick host run).

fp16 where the cube does the work (matmul, conv), fp32 elsewhere, with a few fp16
elementwise operators. Workloads whose ``op`` has a vendor reference keep that block
structure; new operator kinds (``matmul_nt``, ``col_reduce``, ``groupnorm``, ...) have
none yet.
"""

from hawk.ir import ops

WORKLOADS = [
    # --- the original 15 ---------------------------------------------------------------
    ops.matmul("matmul_bert_ffn", 128, 768, 768, model="BERT-base FFN slice"),
    ops.matmul("matmul_llama_proj", 64, 512, 1024, model="LLaMA-7B projection slice"),
    ops.batch_matmul("bmm_bert_qk", 12, 128, 128, 64, model="BERT-base attention QK^T"),
    ops.conv2d_nhwc("conv2d_resnet_3x3", 1, 16, 16, 64, 3, 3, 64, model="ResNet-18 layer1"),
    ops.unary("relu_resnet", "relu", 256, 1024, model="ResNet activation"),
    ops.unary("gelu_bert", "gelu", 128, 3072, model="BERT-base FFN"),
    ops.unary("exp_f16", "exp", 256, 512, dtype="float16", model="attention numerator"),
    ops.binary("mul_llama_gate", "mul", 256, 1024, model="LLaMA SwiGLU product"),
    ops.bias_add("bias_add_bert", 128, 768, model="BERT-base linear bias"),
    ops.row_reduce("rowmax_f32", "max", 512, 512, model="attention row max"),
    ops.softmax("softmax_bert", 384, 128, model="BERT-base attention, seq 128"),
    ops.rmsnorm("rmsnorm_llama", 64, 1024, model="LLaMA hidden (scaled)"),
    ops.pool2d("maxpool_resnet", "max", 1, 32, 32, 64, 2, 2, model="ResNet stem pool (scaled)"),
    ops.pool2d("avgpool_mobilenet", "avg", 1, 14, 14, 128, 2, 2, model="MobileNet pool (scaled)"),
    ops.transpose("transpose_bert", 256, 768, model="BERT head split"),
    # --- matmul variants (fp16) ----------------------------------------------------------
    ops.matmul("matmul_tall_skinny_lora", 2048, 64, 256, model="LLaMA LoRA down-projection, rank 64, 2048 tokens (scaled)"),
    ops.batch_matmul("bmm_llama_pv", 8, 128, 64, 128, model="LLaMA attention P @ V, 8 heads, seq 128"),
    ops.matmul_nt("matmul_nt_bert_qkv", 128, 256, 768, model="BERT-base Q projection, nn.Linear [out, in] weight (N scaled)"),
    # M = 1 has the blocks of "matmul" but its own op: GEMV is a separate kernel kind, and the
    # edge-like vendor GEMM only takes whole 8x8x8 MAC tiles (davinci-like pads M to 16).
    ops.matmul("matvec_llama_decode", 1, 1024, 1024, op="matvec",
               model="LLaMA-7B decode step q_proj, one token (scaled)"),
    ops.matmul("matmul_resnet_fc", 8, 1000, 512, model="ResNet-18 classifier fc 512->1000, batch 8"),
    ops.matmul("matmul_bert_seq104", 104, 768, 776, model="BERT-base dense, seq 104, K 776 (M, K not multiples of 16)"),
    # --- activations ---------------------------------------------------------------------
    ops.unary("silu_llama", "silu", 128, 2752, model="LLaMA-7B MLP gate (11008/4)"),
    ops.unary("sigmoid_mobilenet_se", "sigmoid", 64, 960, model="MobileNetV3 squeeze-excite gate"),
    ops.unary("tanh_bert_pooler", "tanh", 64, 768, model="BERT pooler activation"),
    ops.unary("relu_mobilenet_f16", "relu", 784, 96, dtype="float16", model="MobileNetV2 expansion activation (28x28x96)"),
    # --- broadcast -----------------------------------------------------------------------
    ops.row_scale("row_scale_llama", 256, 1024, model="LLaMA RMSNorm 1/rms row scaling"),
    ops.channel_affine("channel_affine_resnet", 1, 28, 28, 128, model="ResNet-18 layer2 folded BatchNorm"),
    ops.binary("add_bert_residual", "add", 128, 768, model="BERT-base residual add"),
    # --- reductions ----------------------------------------------------------------------
    ops.row_reduce("rowsum_bert_ffn", "sum", 128, 3072, model="BERT-base FFN row sum"),
    ops.row_mean("rowmean_llama", 256, 1024, model="LLaMA hidden row mean (scaled)"),
    ops.col_reduce("colsum_bert_bias_grad", "sum", 512, 768, model="BERT-base linear bias gradient"),
    ops.col_reduce("colmax_resnet", "max", 196, 512, model="ResNet-18 global max over 14x14 positions"),
    ops.col_reduce("colmean_resnet_gap", "mean", 49, 2048, model="ResNet-50 global average pool (7x7x2048)"),
    # --- softmax -------------------------------------------------------------------------
    ops.softmax("softmax_llama_long", 32, 2048, model="LLaMA attention scores, seq 2048 (32 rows)"),
    ops.log_softmax("log_softmax_llama_vocab", 16, 8000, model="LLaMA LM-head log-probs (vocab 32000 scaled)"),
    # --- norms ---------------------------------------------------------------------------
    ops.layernorm("layernorm_bert_large", 256, 1024, eps=1e-12, model="BERT-large hidden"),
    ops.rmsnorm("rmsnorm_llama_4096", 16, 4096, model="LLaMA-7B hidden, 16 tokens"),
    ops.groupnorm("groupnorm_resnet", 1, 16, 16, 128, 32, model="ResNet-50 with GroupNorm (32 groups), scaled"),
    # --- pooling -------------------------------------------------------------------------
    ops.pool2d("maxpool_resnet_3x3s2", "max", 1, 33, 33, 64, 3, 2, model="ResNet stem 3x3/2 max pool (scaled)"),
    ops.pool2d("avgpool_resnet_gap", "avg", 1, 7, 7, 512, 7, 7, model="ResNet-18 global average pool"),
    # --- convolution (fp16) --------------------------------------------------------------
    ops.conv2d_nhwc("conv2d_resnet_layer3", 1, 10, 10, 256, 3, 3, 256, model="ResNet-18 layer3 3x3 (spatial scaled)"),
    ops.conv2d_nhwc("conv2d_pointwise_mobilenet", 1, 14, 14, 64, 1, 1, 384,
                    model="MobileNetV2 1x1 expansion 64->384 at 14x14"),
    ops.depthwise_conv2d("dwconv_mobilenet", 1, 16, 16, 144, 3, 1, model="MobileNetV2 depthwise 3x3 (144 ch)"),
    ops.depthwise_conv2d("dwconv_mobilenet_s2", 1, 29, 29, 96, 3, 2, model="MobileNetV2 depthwise 3x3 stride 2"),
    # --- losses --------------------------------------------------------------------------
    ops.cross_entropy("cross_entropy_llama", 64, 8000, model="LLaMA LM loss (vocab scaled)"),
    ops.mse_loss("mse_loss_resnet_distill", 196, 512, model="ResNet-18 feature distillation MSE"),
    # --- layout / gather -----------------------------------------------------------------
    ops.transpose("transpose_llama_heads", 128, 1024, model="LLaMA [seq, hidden] -> [hidden, seq]"),
    ops.resize_nearest("resize_fpn_2x", 1, 14, 14, 256, 2, model="ResNet-FPN top-down 2x nearest upsample"),
    ops.embedding("embedding_bert", 4096, 768, 128, model="BERT-base word embeddings (vocab scaled), 128 tokens"),
]
