"""smoke: one workload per basic category, small enough that everything on it is quick."""

from hawk.ir import ops

WORKLOADS = [
    ops.matmul("matmul_f16", 128, 256, 768, model="BERT-base QKV slice"),
    ops.unary("silu_f32", "silu", 256, 1024, model="LLaMA MLP gate"),
    ops.binary("add_f16", "add", 256, 768, dtype="float16", model="BERT residual"),
    ops.row_reduce("rowsum_f32", "sum", 512, 1024, model="LLaMA hidden"),
    ops.softmax("softmax_f32", 512, 512, model="BERT attention scores"),
    ops.layernorm("layernorm_f32", 128, 768, model="BERT-base"),
]
