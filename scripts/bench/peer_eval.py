"""PyTorch + transformers peer of `reccocktail bench eval`: the same model file and the same token
ids (written by `reccocktail bench eval --dump FILE`), timed the way a transformers user would
run the two protocols.

  python scripts/bench/peer_eval.py GGUF FILE [--device cpu|cuda] [--threads 2]

- prompt pass: the prompt into a fresh KV cache, log-probabilities at its last position;
- likelihood: the prompt pass, then every candidate title (all but its last token) as one right-
  padded batch over the prompt's cache repeated per candidate (a shared-prefix cache);
  score = summed log-probabilities of the title's tokens;
- generate: `model.generate`, greedy, until an EOS id or max_new_tokens.
One untimed warm-up user per protocol, as in ours. Prints JSON. Needs torch, transformers and gguf
(a scratch venv, or a GPU machine's PyTorch; dev only, never a dependency of the tool).
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("inputs")
p.add_argument("--device", default="cpu")
p.add_argument("--threads", type=int, default=2)
# bf16: every pass under torch.autocast (bf16 matmuls, fp32 weights), as PyTorch users run bf16 on a CPU.
p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
a = p.parse_args()
if a.device == "cpu":
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
d, f = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).to(dev).eval()
doc = json.load(open(a.inputs))
users, eos, max_new = doc["users"], doc["eos"], doc["max_new_tokens"]


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def prompt_pass(ids):
    out = model(torch.tensor([ids], device=dev), use_cache=True)
    return out.past_key_values, torch.log_softmax(out.logits[:, -1].float(), -1)


def repeat_cache(cache, c):
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(c)
        return cache
    for layer in cache.layers:
        layer.keys = layer.keys.repeat_interleave(c, 0)
        layer.values = layer.values.repeat_interleave(c, 0)
    return cache


def likelihood(u):
    prompt, titles = u["prompt"], u["titles"]
    n, c = len(prompt), len(titles)
    cache, first = prompt_pass(prompt)
    w = max(1, max(len(t) for t in titles) - 1)
    ids = torch.zeros((c, w), dtype=torch.long)
    mask = torch.zeros((c, n + w), dtype=torch.long)
    mask[:, :n] = 1
    for i, t in enumerate(titles):
        ids[i, : len(t) - 1] = torch.tensor(t[:-1], dtype=torch.long)
        mask[i, n : n + len(t) - 1] = 1
    pos = torch.arange(n, n + w).unsqueeze(0).expand(c, w)
    out = model(ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), past_key_values=repeat_cache(cache, c), use_cache=True)
    lp = torch.log_softmax(out.logits.float(), -1)
    scores = []
    for i, t in enumerate(titles):
        s = first[0, t[0]]
        if len(t) > 1:
            s = s + lp[i, torch.arange(len(t) - 1), torch.tensor(t[1:])].sum()
        scores.append(float(s))
    return scores


def generate(u):
    ids = torch.tensor([u["prompt"]], device=dev)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    return out.shape[1] - ids.shape[1]


def timed(fn):
    fn(users[0])
    sync()
    start = time.perf_counter()
    res = [fn(u) for u in users]
    sync()
    return time.perf_counter() - start, res


with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
    t_prompt, _ = timed(lambda u: prompt_pass(u["prompt"])[1].cpu())
    t_like, scores = timed(likelihood)
    t_gen, lengths = timed(generate)
nu = len(users)
hits = sum(1 for u, s in zip(users, scores) if max(range(len(s)), key=lambda i: (s[i], -i)) == u["target_slot"])
print(json.dumps({
    "torch": torch.__version__,
    "dtype": a.dtype,
    "device": str(dev),
    "users": nu,
    "prompt_s_per_user": t_prompt / nu,
    "likelihood_users_per_s": nu / t_like,
    "generate_users_per_s": nu / t_gen,
    "ratio": t_gen / t_like,
    "candidate_share": (t_like - t_prompt) / t_prompt,
    "mean_new_tokens": sum(lengths) / nu,
    "likelihood_hr_at_1": hits / nu,
}))
