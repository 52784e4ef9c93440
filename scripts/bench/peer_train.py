"""PyTorch + transformers + peft peer of `reccocktail bench --workload train`: same model file,
LoRA r16 (alpha 32) on every linear layer (lora_dropout --dropout, 0 by default), fp32 (or
--dtype bf16: the forward and loss under `torch.autocast(<device>, dtype=torch.bfloat16)`, the way
PyTorch users train in bf16; the weights, LoRA factors and AdamW stay fp32), AdamW, same threads,
on --device (cpu by default; cuda synchronizes before each clock reading).

  python scripts/bench/peer_train.py GGUF --batch 4 --seq-len 128 --steps 3 --threads 2
  python scripts/bench/peer_train.py GGUF --prompts train.parquet --batch 4 --seq-len 320 --steps 6
  python scripts/bench/peer_train.py GGUF --batch 8 --seq-len 512 --steps 6 --device cuda --dtype bf16

Without --prompts: fixed-shape batches, loss on every token. With --prompts (a prompts stage's
train.parquet): the samples wrapped in the model's chat template (system prompt as reccocktail's
default), loss on the response only, batches in data order padded to their longest sample, full
logits: the way the peer's users train. Prints JSON; the first step is a warm-up and not timed.
Needs torch, transformers, peft, gguf, pyarrow (a scratch venv; dev only).
"""
import argparse
import json
import os
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

SYSTEM = "You are a helpful recommendation assistant."

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("--prompts")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq-len", type=int, default=128)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
p.add_argument("--dropout", type=float, default=0.0, help="lora_dropout (the recipes train with 0.05)")
p.add_argument("--device", default="cpu")
a = p.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)


def clock():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


torch.manual_seed(0)
d, f = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=a.dropout, target_modules=targets, task_type="CAUSAL_LM")).to(dev)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)

batches = []
if a.prompts is None:
    g = torch.Generator().manual_seed(0)
    for _ in range(a.steps + 1):
        ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq_len), generator=g)
        batches.append(dict(input_ids=ids, labels=ids.clone()))
    workload = "fixed"
else:
    import pyarrow.parquet as pq

    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    t = pq.read_table(a.prompts).to_pydict()
    samples = []
    for instr, resp in zip(t["instruction"], t["response"]):
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": instr.strip()}]
        prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": resp.strip()}], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"][-a.seq_len:]
        n_prompt = max(0, len(ids) - (len(tok(full, add_special_tokens=False)["input_ids"]) - len(p_ids)))
        samples.append((ids, n_prompt))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for k in range(0, len(samples), a.batch):
        chunk = samples[k : k + a.batch]
        w = max(len(s[0]) for s in chunk)
        ids = torch.full((len(chunk), w), pad)
        labels = torch.full((len(chunk), w), -100)
        mask = torch.zeros((len(chunk), w), dtype=torch.long)
        for i, (s, n_prompt) in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
            mask[i, : len(s)] = 1
        batches.append(dict(input_ids=ids, attention_mask=mask, labels=labels))
    batches = batches[: a.steps + 1]
    workload = "prompts"

secs, tokens, n = 0.0, 0, 0
phases = {"forward_s": 0.0, "backward_s": 0.0, "update_s": 0.0}
for i, b in enumerate(batches):
    b = {k: v.to(dev) for k, v in b.items()}
    start = clock()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
        loss = model(**b).loss
    t1 = clock()
    loss.backward()
    t2 = clock()
    opt.step()
    opt.zero_grad()
    el = clock() - start
    if i > 0:
        phases["forward_s"] += t1 - start
        phases["backward_s"] += t2 - t1
        phases["update_s"] += el - (t2 - start)
        secs += el
        tokens += int(b.get("attention_mask", torch.ones_like(b["input_ids"])).sum())
        n += b["input_ids"].shape[0]
print(json.dumps({"workload": workload, "dtype": a.dtype, "dropout": a.dropout, "steps": len(batches) - 1, "seconds": secs, "tokens_per_s": tokens / secs, "samples_per_s": n / secs, **phases, "device": str(dev), "torch": torch.__version__}))
