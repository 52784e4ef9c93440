#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine, as root and without systemd (Debian's
# slurmctld, slurmd, slurm-client and munge, installed with apt-get when missing): what the CI
# runs `reccocktail submit` against. Idempotent: an already running cluster is left as it is.
#
#   sudo bash scripts/slurm_local.sh [start]   # then: sinfo, squeue, reccocktail submit ...
#   sudo bash scripts/slurm_local.sh stop      # stop the daemons (queued jobs are lost)
set -euo pipefail
if [[ "${1:-start}" == stop ]]; then
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
  echo "slurm_local: stopped"; exit 0
fi
[[ "${1:-start}" == start ]] || { echo "usage: bash scripts/slurm_local.sh [start|stop]" >&2; exit 2; }
if sinfo --noheader --states=idle 2>/dev/null | grep -q .; then
  echo "slurm_local: a cluster is already up"; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
fi
host="$(hostname -s)"
cpus="$(nproc)"
mem="$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=reccocktail
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo --noheader --states=idle 2>/dev/null | grep -q .; then
    echo "slurm_local: single-node cluster up ($host, $cpus CPUs, ${mem} MB)"; exit 0
  fi
  sleep 1
done
echo "slurm_local: the node did not come up; logs:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
