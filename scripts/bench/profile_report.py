"""Group a `perf record` profile into kinds of work and print each kind's share of the samples.

  python3 scripts/bench/profile_report.py PERF_DATA [--time 50%-100%] [--label ours]

Reads `perf report --stdio --sort dso,symbol` (perf must be on PATH), keeps the time window
given (default: the second half of the run, after model loading and the warm-up step), and sums
the samples of each symbol into the first category whose pattern matches `dso symbol`. Prints one
JSON object: {label, samples, shares: {category: fraction}}. Stdlib only.
"""
import argparse
import json
import re
import subprocess
import sys

# First match wins: the order matters (the flash kernel's inner exp before "exp").
CATEGORIES = [
    ("attention, fused kernel", r"flash_attention|cpu_flash|_fused_sdp|sdpa"),
    ("matmul bf16 (oneDNN)", r"\[JIT\]|dnnl|brgemm|jit_|bf16.*gemm|gemm.*bf16|sbgemm"),
    ("matmul fp32 (MKL sgemm)", r"sgemm|mkl_blas"),
    ("exp, softmax, log-softmax", r"exp|softmax|vml|log_sigmoid"),
    ("elementwise, casts, copies", r"VectorizedLoop|copy_kernel|mul_kernel|add_kernel|fill_kernel|div_|masked|where_kernel|compare|sigmoid|silu|cast|neg_kernel|reciprocal|sqrt|pow|index|cat_|memmove|memcpy|memset"),
    ("reductions (sum, mean, max)", r"sum|reduce|mean|max_|norm"),
    ("kernel: zeroing new pages, faults", r"^\[kernel\S*\] .*(clear_page|fault|anonymous_page|alloc_pages|get_page|lru|memcg|pte|mm_fault)"),
    ("kernel: other", r"^\[kernel"),
    ("thread pool (OpenMP)", r"libgomp|libiomp|omp"),
    ("allocator", r"malloc|_int_free|free\b|unlink_chunk|cfree|posix_memalign"),
    ("python interpreter", r"python|libpython"),
    ("reccocktail (host code)", r"^reccocktail "),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--time", default="50%-100%")
    p.add_argument("--label", default="")
    a = p.parse_args()
    cmd = ["perf", "report", "-i", a.data, "--stdio", "--sort", "dso,symbol", "--time", a.time, "-F", "sample,dso,symbol"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    totals = {name: 0 for name, _ in CATEGORIES}
    totals["other"] = 0
    compiled = [(name, re.compile(rx)) for name, rx in CATEGORIES]
    samples = 0
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+(?: tid \d+)?)\s+\[[.k]\]\s+(.*)$", line)
        if not m:
            continue
        n, dso, sym = int(m.group(1)), m.group(2), m.group(3).strip()
        key = f"{dso} {sym}"
        samples += n
        for name, rx in compiled:
            if rx.search(key):
                totals[name] += n
                break
        else:
            totals["other"] += n
    if samples == 0:
        sys.exit(f"no samples in {a.data} for --time {a.time}")
    print(json.dumps({"label": a.label, "samples": samples, "shares": {k: v / samples for k, v in totals.items()}}))


if __name__ == "__main__":
    main()
