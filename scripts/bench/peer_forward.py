"""PyTorch + transformers peer of `reccocktail bench forward`: same model file, shapes, threads.

  python scripts/bench/peer_forward.py GGUF --batch 4 --seq-len 128 --iters 5 --threads 2
Prints JSON {"tokens_per_s": ...}. Needs torch, transformers, gguf (a scratch venv; dev only).
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq-len", type=int, default=128)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
# bf16: under torch.autocast (bf16 matmuls, fp32 weights), as PyTorch users run bf16 on a CPU.
p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
a = p.parse_args()
torch.set_num_threads(a.threads)
d, f = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq_len), generator=torch.Generator().manual_seed(0))
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
    model(ids)
    start = time.perf_counter()
    for _ in range(a.iters):
        model(ids)
    secs = time.perf_counter() - start
print(json.dumps({"batch": a.batch, "seq_len": a.seq_len, "iters": a.iters, "seconds": secs, "tokens_per_s": a.batch * a.seq_len * a.iters / secs, "dtype": a.dtype, "torch": torch.__version__}))
