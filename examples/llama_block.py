"""A LLaMA-style transformer block as a Relax model, scaled for the host.

RMSNorm, causal self-attention with rotary position embeddings (RoPE), a residual, RMSNorm,
a SwiGLU MLP and a residual. Activations are float32; matrix multiplications read float16
operands and accumulate in float32, as an NPU's matrix unit does.

    hawk compile examples/llama_block.py --target davinci-like

``model()`` gives (Relax IRModule, named inputs); ``reference(inputs)`` is the same block
in numpy. Copy this file and change the sizes or the layers for your own model.
"""

import numpy as np
from tvm import relax
from tvm.script import relax as R  # noqa: F401 - the ops below are relax.op

SEQ, HIDDEN, HEADS, FFN = 32, 128, 4, 256
HEAD_DIM = HIDDEN // HEADS
EPS = 1e-6


def model():
    f32, f16 = "float32", "float16"
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((SEQ, HIDDEN), f32))
    weights = {name: relax.Var(name, relax.TensorType(shape, f16 if name.startswith("w") else f32))
               for name, shape in _shapes().items()}
    op = relax.op
    with bb.function("main", [x, *weights.values()]):
        with bb.dataflow():
            def rmsnorm(h, gamma):
                ms = op.mean(op.multiply(h, h), axis=[-1], keepdims=True)
                return op.multiply(op.multiply(h, op.rsqrt(op.add(ms, relax.const(EPS, f32)))), gamma)

            def linear(h, w):  # float16 operands, float32 accumulation
                return op.matmul(op.astype(h, f16), w, out_dtype=f32)

            def heads(h):  # [SEQ, HIDDEN] -> [HEADS, SEQ, HEAD_DIM]
                return op.permute_dims(op.reshape(h, (SEQ, HEADS, HEAD_DIM)), [1, 0, 2])

            def rope(h):
                half = HEAD_DIM // 2
                first = op.strided_slice(h, axes=[2], begin=[0], end=[half])
                second = op.strided_slice(h, axes=[2], begin=[half], end=[HEAD_DIM])
                rotated = op.concat([op.negative(second), first], axis=-1)
                return op.add(op.multiply(h, weights["cos"]), op.multiply(rotated, weights["sin"]))

            h = rmsnorm(x, weights["attn_norm"])
            q, k, v = (heads(linear(h, weights[w])) for w in ("wq", "wk", "wv"))
            q, k = rope(q), rope(k)
            scores = op.matmul(op.astype(q, f16), op.permute_dims(op.astype(k, f16), [0, 2, 1]), out_dtype=f32)
            scores = op.add(op.multiply(scores, relax.const(1.0 / np.sqrt(HEAD_DIM), f32)), weights["mask"])
            probs = op.nn.softmax(scores, axis=-1)
            attn = op.matmul(op.astype(probs, f16), op.astype(v, f16), out_dtype=f32)
            attn = op.reshape(op.permute_dims(attn, [1, 0, 2]), (SEQ, HIDDEN))
            x2 = op.add(x, linear(attn, weights["wo"]))
            h2 = rmsnorm(x2, weights["mlp_norm"])
            gate, up = linear(h2, weights["wg"]), linear(h2, weights["wu"])
            out = op.add(x2, linear(op.multiply(op.nn.silu(gate), up), weights["wd"]))
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    return bb.get(), inputs()


def _shapes() -> dict:
    return {"attn_norm": (HIDDEN,), "wq": (HIDDEN, HIDDEN), "wk": (HIDDEN, HIDDEN), "wv": (HIDDEN, HIDDEN),
            "cos": (SEQ, HEAD_DIM), "sin": (SEQ, HEAD_DIM), "mask": (SEQ, SEQ), "wo": (HIDDEN, HIDDEN),
            "mlp_norm": (HIDDEN,), "wg": (HIDDEN, FFN), "wu": (HIDDEN, FFN), "wd": (FFN, HIDDEN)}


def inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"x": rng.normal(0, 1, (SEQ, HIDDEN)).astype("float32")}
    for name, shape in _shapes().items():
        if name.startswith("w"):
            out[name] = (rng.normal(0, 1, shape) / np.sqrt(shape[0])).astype("float16")
        elif name.endswith("norm"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype("float32")
    pos = np.arange(SEQ)[:, None] / (10000 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM))[None, :]
    angles = np.concatenate([pos, pos], axis=-1)
    out["cos"], out["sin"] = np.cos(angles).astype("float32"), np.sin(angles).astype("float32")
    out["mask"] = np.triu(np.full((SEQ, SEQ), -1e9, "float32"), k=1)
    return out


def reference(a: dict) -> np.ndarray:
    def rmsnorm(h, gamma):
        return h / np.sqrt((h * h).mean(-1, keepdims=True) + EPS) * gamma

    def linear(h, w):
        return h.astype(np.float16).astype(np.float64) @ w.astype(np.float64)

    def heads(h):
        return h.reshape(SEQ, HEADS, HEAD_DIM).transpose(1, 0, 2)

    def rope(h):
        half = HEAD_DIM // 2
        rotated = np.concatenate([-h[..., half:], h[..., :half]], axis=-1)
        return h * a["cos"] + rotated * a["sin"]

    x = a["x"].astype(np.float64)
    h = rmsnorm(x, a["attn_norm"])
    q, k, v = (heads(linear(h, a[w])) for w in ("wq", "wk", "wv"))
    q, k = rope(q), rope(k)
    f16 = lambda t: t.astype(np.float16).astype(np.float64)
    scores = f16(q) @ f16(k).transpose(0, 2, 1) / np.sqrt(HEAD_DIM) + a["mask"]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    attn = (f16(probs) @ f16(v)).transpose(1, 0, 2).reshape(SEQ, HIDDEN)
    x2 = x + linear(attn, a["wo"])
    h2 = rmsnorm(x2, a["mlp_norm"])
    gate, up = linear(h2, a["wg"]), linear(h2, a["wu"])
    return (x2 + linear(gate / (1 + np.exp(-gate)) * up, a["wd"])).astype(np.float32)
