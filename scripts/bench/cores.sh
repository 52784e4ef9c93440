# Sourced by the bench scripts: prints the processor's vendor, family and model, and how well its
# CPUs run two busy processes at once (the throughput of two single-threaded processes side by
# side over one alone; two full cores read 2.0x). On this project's 2-vCPU VMs it has read 1.39x
# and 1.85-1.88x within one hour: the host's sharing varies, and with it every timing. Timings
# from runs that differ here are not comparable; ratios within one run are.
cores_probe() {
  # VMs often name only "AMD EPYC": the family tells Zen 3/4 (25, AVX-512 on half-width units)
  # from Zen 5 (26, full width). environment.json records the same as `cpu_signature`.
  awk -F: '/^vendor_id/ {v=$2} /^cpu family/ {f=$2} /^model[ \t]*:/ {m=$2} /^stepping/ {s=$2; exit} END {gsub(/ /, "", v); printf "processor: %s family%s model%s stepping%s\n", v, f, m, s}' /proc/cpuinfo
  local loop='import time; t=time.perf_counter(); sum(i*i for i in range(2*10**7)); print(time.perf_counter()-t)'
  local one two
  one=$(python3 -c "$loop")
  two=$( (python3 -c "$loop" & python3 -c "$loop" & wait) | sort -n | tail -n1)
  python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f"two busy processes at once: {2*a/b:.2f}x the throughput of one (2.0 = two full cores)")' "$one" "$two"
}
