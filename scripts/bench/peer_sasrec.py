"""PyTorch peer of `reccocktail bench sasrec`: the same SASRec (the fixture generator's module,
scripts/fixtures/make_sasrec_fixture.py), the same shapes, fixed random batches, Adam (0.9, 0.98),
timed forward + backward + update; prints one JSON line.

  python scripts/bench/peer_sasrec.py [--items 3416 --batch 128 --max-len 200 --hidden 50
                                       --blocks 2 --heads 1 --dropout 0.2 --steps 10 --threads 2]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from make_sasrec_fixture import SasRec  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    for name, default in [("items", 3416), ("batch", 128), ("max-len", 200), ("hidden", 50), ("blocks", 2), ("heads", 1), ("steps", 10), ("threads", 2)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--dropout", type=float, default=0.2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    model = SasRec(a.items, a.hidden, a.heads, a.blocks, a.max_len, a.dropout)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    draw = lambda: torch.randint(1, a.items + 1, (a.batch, a.max_len))
    elapsed, loss = 0.0, None
    for step in range(a.steps + 1):
        seqs, pos, neg = draw(), draw(), draw()
        t = time.perf_counter()
        opt.zero_grad()
        loss = model.loss(seqs, pos, neg)
        loss.backward()
        opt.step()
        if step > 0:
            elapsed += time.perf_counter() - t
    step_s = elapsed / a.steps
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "step_s": step_s, "sequences_per_s": a.batch / step_s, "final_loss": loss.item()}))


if __name__ == "__main__":
    main()
