# Sourced by the bench scripts: prints how well this machine's CPUs run two busy processes at
# once, as the throughput of two single-threaded processes side by side over one alone. Separate
# physical cores read about 2.0x; two vCPUs that share one core (SMT siblings on the host, which
# the guest's lscpu does not show) read about 1.4x and halve what a second thread adds to a
# matmul. Timings from machines that differ here are not comparable; ratios within one run are.
cores_probe() {
  # VMs often name only "AMD EPYC": the family tells Zen 3/4 (25) from Zen 5 (26), whose bf16
  # products run at twice the width. environment.json records the same as `cpu_signature`.
  awk -F: '/^vendor_id/ {v=$2} /^cpu family/ {f=$2} /^model[ \t]*:/ {m=$2} /^stepping/ {s=$2; exit} END {gsub(/ /, "", v); printf "processor: %s family%s model%s stepping%s\n", v, f, m, s}' /proc/cpuinfo
  local loop='import time; t=time.perf_counter(); sum(i*i for i in range(2*10**7)); print(time.perf_counter()-t)'
  local one two
  one=$(python3 -c "$loop")
  two=$( (python3 -c "$loop" & python3 -c "$loop" & wait) | sort -n | tail -n1)
  python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f"two busy processes at once: {2*a/b:.2f}x the throughput of one (2.0 = two full cores)")' "$one" "$two"
}
