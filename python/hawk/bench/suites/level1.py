"""level1: single operators with shapes from real models (scaled for a quick host run)."""

from hawk.ir import ops

WORKLOADS = [
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
]
