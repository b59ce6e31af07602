"""A small CNN as a Relax model: conv + batch norm + ReLU stages, pooling, a classifier.

NHWC activations in float32; convolutions and the classifier read float16 operands and
accumulate in float32, as an NPU's matrix unit does. Batch norm is the inference form
(scale and shift per channel from running statistics).

    hawk compile examples/small_cnn.py --target edge-like

``model()`` gives (Relax IRModule, named inputs); ``reference(inputs)`` is the same network
in numpy. Copy this file and change the stages for your own model.
"""

import numpy as np
from tvm import relax

# the image arrives with its channels padded to 16, as NPU frameworks lay images out (a
# channel-blocked layout): rows of 3 values are DMA bursts no NPU moves well
BATCH, SIZE, CHANNELS, CLASSES = 1, 16, 16, 10
STAGES = (16, 32)  # output channels of each conv stage (3x3, stride 1, padding 1)
EPS = 1e-5


def _shapes() -> dict:
    shapes, cin = {}, CHANNELS
    for s, cout in enumerate(STAGES):
        shapes[f"w{s}"] = (3, 3, cin, cout)
        for stat in ("gamma", "beta", "mean", "var"):
            shapes[f"{stat}{s}"] = (cout,)
        cin = cout
    shapes["fc"] = (cin, CLASSES)
    return shapes


def model():
    f32, f16 = "float32", "float16"
    op = relax.op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((BATCH, SIZE, SIZE, CHANNELS), f32))
    params = {n: relax.Var(n, relax.TensorType(s, f16 if n.startswith(("w", "fc")) else f32))
              for n, s in _shapes().items()}
    with bb.function("main", [x, *params.values()]):
        with bb.dataflow():
            h = x
            for s in range(len(STAGES)):
                h = op.nn.conv2d(op.astype(h, f16), params[f"w{s}"], padding=1, data_layout="NHWC",
                                 kernel_layout="HWIO", out_dtype=f32)
                scale = op.divide(params[f"gamma{s}"], op.sqrt(op.add(params[f"var{s}"], relax.const(EPS, f32))))
                h = op.add(op.multiply(op.subtract(h, params[f"mean{s}"]), scale), params[f"beta{s}"])
                h = op.nn.relu(h)
                h = op.nn.max_pool2d(h, pool_size=2, strides=2, layout="NHWC")
            h = op.mean(h, axis=[1, 2])  # global average pooling -> [BATCH, C]
            logits = op.matmul(op.astype(h, f16), params["fc"], out_dtype=f32)
            gv = bb.emit_output(logits)
        bb.emit_func_output(gv)
    return bb.get(), inputs()


def inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"x": rng.normal(0, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype("float32")}
    for name, shape in _shapes().items():
        if name.startswith(("w", "fc")):
            fan_in = int(np.prod(shape[:-1]))
            out[name] = (rng.normal(0, 1, shape) / np.sqrt(fan_in)).astype("float16")
        elif name.startswith("var"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype("float32")
        elif name.startswith("gamma"):
            out[name] = rng.uniform(0.8, 1.2, shape).astype("float32")
        else:
            out[name] = rng.normal(0, 0.1, shape).astype("float32")
    return out


def reference(a: dict) -> np.ndarray:
    def f16(t):
        return t.astype(np.float16).astype(np.float64)

    h = a["x"].astype(np.float64)
    for s in range(len(STAGES)):
        w = a[f"w{s}"].astype(np.float64)
        padded = np.pad(f16(h), ((0, 0), (1, 1), (1, 1), (0, 0)))
        n, hh, ww, _ = h.shape
        conv = np.zeros((n, hh, ww, w.shape[-1]))
        for dy in range(3):
            for dx in range(3):
                conv += padded[:, dy:dy + hh, dx:dx + ww, :] @ w[dy, dx]
        scale = a[f"gamma{s}"] / np.sqrt(a[f"var{s}"] + EPS)
        h = np.maximum((conv - a[f"mean{s}"]) * scale + a[f"beta{s}"], 0)
        h = h.reshape(n, hh // 2, 2, ww // 2, 2, -1).max(axis=(2, 4))
    return (f16(h.mean(axis=(1, 2))) @ a["fc"].astype(np.float64)).astype(np.float32)
