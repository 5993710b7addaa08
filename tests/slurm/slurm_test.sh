#!/usr/bin/env bash
# The SLURM batch scripts on a real single-node SLURM that this test starts
# and stops itself: munged, slurmctld and slurmd from Debian's packages, with
# their config, key, sockets, state and logs in a private temporary directory
# and ports of their own, so that nothing on the machine is touched.
#   slurm_test.sh SOURCE_ROOT FEDKD_SIM CHECK_SWEEP
# Jobs: launch/slurm-run.sbatch with srun and with mpirun inside the
# allocation, launch/slurm-sweep.sbatch with both; each must complete and
# leave its results under the submit directory. Exits 77 (skipped) when the
# packages are missing (./launch/test installs them) or when not root.
set -uo pipefail
root=$1 sim=$2 check=$3

for program in munged slurmctld slurmd sbatch sinfo squeue scontrol scancel srun; do
    if ! command -v "$program" >/dev/null; then
        echo "SKIP: $program not found; install slurm-wlm and munge (./launch/test does)"
        exit 77
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: a private slurmd must run as root to start jobs"
    exit 77
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
work=$(mktemp -d /tmp/fedkd-slurm-test.XXXXXX)
chmod 700 "$work"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
daemon_pids=()
jobs_submitted=()

stop_all() {
    local job pid
    for job in "${jobs_submitted[@]}"; do scancel "$job" 2>/dev/null; done
    for pid in "${daemon_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${daemon_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${daemon_pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    if [ $failures != 0 ]; then
        for log in "$work"/slurmctld.log "$work"/slurmd.log "$work"/munge/munged.log; do
            echo "---- $log (last lines)" >&2
            tail -15 "$log" >&2 2>/dev/null
        done
    fi
    rm -rf "$work"
}
trap stop_all EXIT

# Two free local ports, so that a SLURM already on this machine is not disturbed.
port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 50); do
    ctld_port=$((20000 + RANDOM % 30000))
    port_free $ctld_port && port_free $((ctld_port + 1)) && break
done
host=$(hostname -s)

# munged with its own key and socket.
mkdir -m 700 "$work/munge" "$work/state" "$work/spool" "$work/submit"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$work/munge/munge.key"
munged --force --socket="$work/munge/socket" --key-file="$work/munge/munge.key" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/seed" || { fail "munged did not start"; exit 1; }
for _ in $(seq 1 50); do [ -s "$work/munge/munged.pid" ] && break; sleep 0.1; done
daemon_pids+=("$(cat "$work/munge/munged.pid")")

cat >"$work/slurm.conf" <<EOF
ClusterName=fedkdtest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=5
NodeName=$host CPUs=16 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
daemon_pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
daemon_pids+=($!)
idle=0
for _ in $(seq 1 150); do
    if [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; then idle=1; break; fi
    sleep 0.2
done
if [ $idle = 0 ]; then
    fail "the node did not become idle within 30 s: $(sinfo -N 2>&1 | tail -1)"
    exit 1
fi

sweep_program=$sim

# submit NAME SCRIPT [args...]: runs the job to its end (bounded), leaves
# its job id in $job and its output in $work/submit/NAME.out.
submit() {
    local name=$1 script=$2
    shift 2
    job=$(cd "$work/submit" && sbatch --parsable --ntasks=4 --time=3 --job-name="$name" \
        --output="$work/submit/$name.out" "$root/launch/$script" "$@")
    if [ -z "$job" ]; then
        fail "[$name] sbatch refused the job"
        return 1
    fi
    jobs_submitted+=("$job")
    local state=""
    for _ in $(seq 1 600); do
        state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
        case $state in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
        sleep 0.2
    done
    if [ "$state" != COMPLETED ]; then
        fail "[$name] job $job ended $state: $(tail -5 "$work/submit/$name.out" 2>/dev/null)"
        return 1
    fi
}

cat >"$work/submit/tiny.json" <<'EOF'
{"mode": "federated",
 "data": {"name": "synthetic", "synthetic_train": 800, "synthetic_test": 200},
 "model": [{"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dense", "units": 4}],
 "clients": {"count": 6}, "partition": {"min_size": 5}, "local": {"batch_size": 16},
 "rounds": 3}
EOF
printf '{"base": "tiny.json", "group_size": 2, "grid": {"seed": [1, 2], "algorithm": ["fedavg", "fedprox"]}}\n' \
    >"$work/submit/tiny-grid.json"

for launcher in srun mpirun; do
    if FEDKD_SIM=$sim FEDKD_LAUNCHER=$launcher submit "run-$launcher" slurm-run.sbatch tiny.json \
        --set rounds=2; then
        dir=$work/submit/runs/tiny-$job
        grep -q '"status":[[:space:]]*"completed"' "$dir/summary.json" 2>/dev/null \
            || fail "[run-$launcher] no completed summary.json in $dir: $(tail -5 "$work/submit/run-$launcher.out")"
        grep -q '"rounds_run":[[:space:]]*2' "$dir/summary.json" 2>/dev/null \
            || fail "[run-$launcher] the --set after the config did not reach fedkd-sim"
        grep -q "via $launcher" "$work/submit/run-$launcher.out" \
            || fail "[run-$launcher] the job did not use $launcher: $(head -2 "$work/submit/run-$launcher.out")"
    fi
done

for launcher in srun mpirun; do
    out=$work/submit/runs/sweep-tiny-grid
    if FEDKD_SIM=$sweep_program FEDKD_LAUNCHER=$launcher submit "sweep-$launcher" slurm-sweep.sbatch \
        tiny-grid.json; then
        "$check" count "$out/results.json" 4 0 || fail "[sweep-$launcher] the table is not complete"
        grep -q "via $launcher" "$work/submit/sweep-$launcher.out" \
            || fail "[sweep-$launcher] the job did not use $launcher"
    fi
    # The second submission continues the same sweep: nothing left to run.
    if [ $launcher = mpirun ]; then
        grep -q '4 points, 0 to run' "$work/submit/sweep-$launcher.out" \
            || fail "[sweep-$launcher] a resubmitted sweep ran again: $(grep 'sweep:' "$work/submit/sweep-$launcher.out")"
    fi
done

if [ $failures != 0 ]; then
    echo "slurm: $failures failure(s)" >&2
    exit 1
fi
echo "slurm: passed"
