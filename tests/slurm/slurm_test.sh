#!/usr/bin/env bash
# The SLURM batch scripts on a real two-node SLURM that this test starts and
# stops itself: munged, slurmctld and two slurmd (nodes n1 and n2 on this
# host, each with its own port, spool and PMIx directory) from Debian's
# packages, with their config, key, sockets, state and logs in a private
# temporary directory and ports of their own, so that nothing on the machine
# is touched. Everything is torn down on any exit.
#   slurm_test.sh SOURCE_ROOT FEDKD_SIM CHECK_SWEEP CHECK_RUN
# Jobs: launch/slurm-run.sbatch with srun and with mpirun inside the
# allocation, launch/slurm-sweep.sbatch with both; each must complete and
# leave its results under the submit directory. Then on both nodes: one
# federation across them (bit-identical to one node), a sweep's groups on
# both, ranks killed on one node (the whole job ends within seconds), a
# killed node (slurmd, its step and ranks: the job fails, a resubmission
# continues from the last complete checkpoint), and the time limit's
# signals (SIGTERM to every process of the job, SIGUSR1 to the batch shell):
# a checkpoint of every finished round, summary.json `interrupted`, and a
# resubmission that ends bit-identical to an uninterrupted run. Exits 77
# (skipped) when the packages are missing (./launch/test installs them) or
# when not root.
set -uo pipefail
root=$1 sim=$2 check=$3 check_run=$4

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
# Two nodes on one host would share Open MPI's shared-memory backing files,
# whose names collide across nodes: TCP between all ranks here. The sweep's
# one-sided counter window across nodes then needs osc pt2pt or rdma: osc
# ucx, found installed, fails without a network UCX can use.
export OMPI_MCA_btl=self,tcp OMPI_MCA_osc=^ucx
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
        for log in "$work"/slurmctld.log "$work"/slurmd-n?.log "$work"/munge/munged.log; do
            echo "---- $log (last lines)" >&2
            tail -15 "$log" >&2 2>/dev/null
        done
    fi
    rm -rf "$work"
}
trap stop_all EXIT

# Three free local ports, so that a SLURM already on this machine is not disturbed.
port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 50); do
    ctld_port=$((20000 + RANDOM % 30000))
    port_free $ctld_port && port_free $((ctld_port + 1)) && port_free $((ctld_port + 2)) && break
done
host=$(hostname -s)

# munged with its own key and socket.
mkdir -m 700 "$work/munge" "$work/state" "$work/spool" "$work/submit" "$work/tmp"
mkdir -m 700 "$work/spool/n1" "$work/spool/n2" "$work/tmp/n1" "$work/tmp/n2"
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
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
TmpFS=$work/tmp/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd-%n.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd-%n.log
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
SlurmdTimeout=10
NodeName=n1 NodeHostname=$host Port=$((ctld_port + 1)) CPUs=8 State=UNKNOWN
NodeName=n2 NodeHostname=$host Port=$((ctld_port + 2)) CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
daemon_pids+=($!)
declare -A slurmd_pid
start_slurmd() { # start_slurmd NODE
    slurmd -D -N "$1" -f "$SLURM_CONF" >"$work/slurmd-$1.out" 2>&1 &
    slurmd_pid[$1]=$!
    daemon_pids+=($!)
}
both_idle() { # until both nodes are idle, at most $1 seconds
    for _ in $(seq 1 $(($1 * 5))); do
        [ "$(sinfo -h -N -o %t 2>/dev/null | sort -u)" = idle ] \
            && [ "$(sinfo -h -N -o %N | wc -l)" = 2 ] && return 0
        sleep 0.2
    done
    return 1
}
start_slurmd n1
start_slurmd n2
if ! both_idle 30; then
    fail "the nodes did not become idle within 30 s: $(sinfo -N 2>&1 | tail -2)"
    exit 1
fi

sweep_program=$sim

# submit NAME SCRIPT [args...]: runs the job to its end (bounded), leaves
# its job id in $job and its output in $work/submit/NAME.out.
# The sbatch options (--ntasks=4 unless given) are in the array `shape`.
shape=()
# start NAME SCRIPT [args...]: submits; leaves the job id in $job.
start() {
    local name=$1 script=$2
    shift 2
    local options=(--ntasks=4)
    [ ${#shape[@]} != 0 ] && options=("${shape[@]}")
    job=$(cd "$work/submit" && sbatch --parsable "${options[@]}" --time=3 --job-name="$name" \
        --output="$work/submit/$name.out" "$root/launch/$script" "$@")
    if [ -z "$job" ]; then
        fail "[$name] sbatch refused the job"
        return 1
    fi
    jobs_submitted+=("$job")
}
job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# finish NAME [SECONDS]: waits (bounded) for $job to end; its state in $state.
finish() {
    local tries=$((${2:-120} * 5))
    state=""
    for _ in $(seq 1 $tries); do
        state=$(job_state "$job")
        case $state in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; esac
        sleep 0.2
    done
    return 1
}
# submit NAME SCRIPT [args...]: runs the job to its end (bounded), leaves
# its job id in $job and its output in $work/submit/NAME.out.
submit() {
    local name=$1
    start "$@" || return 1
    finish "$name"
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

# ---- Two nodes -------------------------------------------------------------
# A wrapper that notes where each rank runs (node, rank, pid) before it
# becomes fedkd-sim (exec keeps the pid).
cat >"$work/submit/where-sim" <<EOF
#!/bin/sh
echo "\${SLURMD_NODENAME:-?} \${OMPI_COMM_WORLD_RANK:-\${SLURM_PROCID:-?}} \$\$" >>"$work/submit/where-\${SLURM_JOB_ID:-0}"
exec "$sim" "\$@"
EOF
chmod +x "$work/submit/where-sim"
where() { cat "$work/submit/where-$1" 2>/dev/null; }
# "n1:8 n2:8": ranks per node.
per_node() { where "$1" | awk '{print $1}' | sort | uniq -c | awk '{printf "%s%s:%s", sep, $2, $1; sep=" "}'; }
run_dir_of() { echo "$work/submit/runs/$1-$2"; } # CONFIG_NAME JOB
summary_says() { grep -q "\"status\":[[:space:]]*\"$2\"" "$1/summary.json" 2>/dev/null; }
logged() { if [ -f "$1/rounds.jsonl" ]; then wc -l <"$1/rounds.jsonl"; else echo 0; fi; }
newest_round() {
    ls "$1" 2>/dev/null | sed -n 's/^checkpoint-0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1
}
wait_logged() { # wait_logged DIR ROWS SECONDS
    for _ in $(seq 1 $(($3 * 5))); do
        [ "$(logged "$1")" -ge "$2" ] && return 0
        sleep 0.2
    done
    return 1
}
now() { date +%s%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

# 16 clients, so that 16 ranks each host one; a round takes tens of ms.
cat >"$work/submit/fed16.json" <<'EOF'
{"mode": "federated",
 "data": {"name": "synthetic", "synthetic_train": 1600, "synthetic_test": 200},
 "model": [{"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dense", "units": 4}],
 "clients": {"count": 16}, "partition": {"min_size": 5}, "local": {"batch_size": 16},
 "rounds": 3, "checkpoint": {"every": 5}}
EOF

# A 30-round run on one node (4 ranks): the reference for everything below.
long=(--set rounds=30)
shape=(--nodes=1 --ntasks=4)
FEDKD_SIM=$sim FEDKD_LAUNCHER=srun submit long-reference slurm-run.sbatch fed16.json "${long[@]}" \
    && reference=$(run_dir_of fed16 "$job")

# One federation across both nodes, with srun and with mpirun: 8 ranks on
# each, the result bit-identical to 4 ranks on one node.
for launcher in srun mpirun; do
    shape=(--nodes=2 --ntasks=16)
    if FEDKD_SIM=$work/submit/where-sim FEDKD_LAUNCHER=$launcher submit "two-$launcher" \
        slurm-run.sbatch fed16.json "${long[@]}"; then
        dir=$(run_dir_of fed16 "$job")
        [ "$(per_node "$job")" = "n1:8 n2:8" ] \
            || fail "[two-$launcher] ranks per node '$(per_node "$job")', expected 8 on each of n1, n2"
        "$check_run" same "$reference" "$dir" \
            || fail "[two-$launcher] the two-node run differs from the one-node run"
        echo "two nodes via $launcher: ranks $(per_node "$job"), bit-identical to one node"
    fi
done

# A sweep in groups of 4 on 2 x 4 tasks: one group on each node.
printf '{"base": "fed16.json", "group_size": 4, "output": "runs/sweep-two", "grid": {"seed": [1, 2, 3, 4]}}\n' \
    >"$work/submit/two-grid.json"
shape=(--nodes=2 --ntasks=8 --ntasks-per-node=4)
if FEDKD_SIM=$work/submit/where-sim FEDKD_LAUNCHER=srun submit sweep-two slurm-sweep.sbatch \
    two-grid.json; then
    "$check" count "$work/submit/runs/sweep-two/results.json" 4 0 || fail "[sweep-two] the table is not complete"
    group0=$(where "$job" | awk '$2 < 4 {print $1}' | sort -u | tr '\n' ' ')
    group1=$(where "$job" | awk '$2 >= 4 {print $1}' | sort -u | tr '\n' ' ')
    [ "$group0" = "n1 " ] && [ "$group1" = "n2 " ] \
        || fail "[sweep-two] group 0 ran on '$group0', group 1 on '$group1': not one group per node"
fi

# Ranks killed on one node: the whole job ends within seconds (srun needs
# --kill-on-bad-exit, else the other node's ranks wait for the time limit;
# mpirun ends its job itself, 2 x odls_base_sigkill_timeout seconds later).
for launcher in srun; do
    shape=(--nodes=2 --ntasks=8 --ntasks-per-node=4)
    FEDKD_TEST_SLEEP_IN_ROUND_MS=100 FEDKD_SIM=$work/submit/where-sim FEDKD_LAUNCHER=$launcher \
        start "kill-$launcher" slurm-run.sbatch fed16.json --set rounds=100000 \
        --set checkpoint.every=0 || continue
    dir=$(run_dir_of fed16 "$job")
    if ! wait_logged "$dir" 2 90; then
        fail "[kill-$launcher] no round logged: $(tail -3 "$work/submit/kill-$launcher.out")"
        continue
    fi
    victims=$(where "$job" | awk '$1 == "n2" {print $3}' | tr '\n' ' ')
    everyone=$(where "$job" | awk '{print $3}' | tr '\n' ' ')
    t0=$(now)
    # shellcheck disable=SC2086
    kill -KILL $victims
    gone=0
    for _ in $(seq 1 300); do
        alive=0
        for pid in $everyone; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && gone=1 && break
        sleep 0.1
    done
    took=$(seconds_since "$t0")
    finish "kill-$launcher" 60
    ended=$(seconds_since "$t0")
    if [ $gone = 0 ]; then
        fail "[kill-$launcher] ranks still alive 30 s after the ranks on n2 were killed (job $state)"
    else
        echo "ranks on n2 killed ($launcher): every rank gone after ${took} s, job $state after ${ended} s"
    fi
done

# From here rounds sleep 200 ms (a test hook), so that a signal or a kill
# lands mid-run without burning CPU.
export FEDKD_TEST_SLEEP_IN_ROUND_MS=200

# resubmit NAME DIR LAUNCHER: the same job again into DIR (the script passes
# --resume auto); it must continue and end bit-identical to the reference.
resubmit() {
    shape=(--nodes=2 --ntasks=8 --ntasks-per-node=4)
    FEDKD_TEST_SLEEP_IN_ROUND_MS=0 FEDKD_SIM=$sim FEDKD_LAUNCHER=$3 submit "$1-again" slurm-run.sbatch fed16.json "${long[@]}" \
        --set run.dir="$2" || return 1
    "$check_run" same "$reference" "$2" || fail "[$1] interrupted and resubmitted differs from one uninterrupted run"
}

# A node dies (its slurmd, its step daemon and its ranks killed): the job
# fails cleanly, and a resubmission continues from the last complete
# checkpoint.
shape=(--nodes=2 --ntasks=8 --ntasks-per-node=4 --no-requeue)
if FEDKD_SIM=$work/submit/where-sim FEDKD_LAUNCHER=srun start node-dies slurm-run.sbatch \
    fed16.json "${long[@]}" --set checkpoint.every=3; then
    dir=$(run_dir_of fed16 "$job")
    if wait_logged "$dir" 7 120; then
        victims=$(where "$job" | awk '$1 == "n2" {print $3}' | tr '\n' ' ')
        # shellcheck disable=SC2086
        stepd=$(ps -o ppid= -p $victims | sort -u | tr '\n' ' ')
        survivors=$(where "$job" | awk '$1 == "n1" {print $3}' | tr '\n' ' ')
        # shellcheck disable=SC2086
        kill -KILL "${slurmd_pid[n2]}" $stepd $victims
        t0=$(now)
        # SLURM finds n2 dead after SlurmdTimeout (10 s here) and ends the
        # job (NODE_FAIL), n1's ranks included.
        gone=0
        for _ in $(seq 1 600); do
            alive=0
            for pid in $survivors; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && [ "$(job_state "$job")" != RUNNING ] && gone=1 && break
            sleep 0.1
        done
        [ $gone = 1 ] || fail "[node-dies] n1's ranks or the job still running 60 s after n2 died: $(job_state "$job")"
        took=$(seconds_since "$t0")
        wait "${slurmd_pid[n2]}" 2>/dev/null
        start_slurmd n2
        finish node-dies 60 || fail "[node-dies] job $job still $state after n2 came back"
        saved=$(newest_round "$dir")
        echo "n2 died: n1's ranks gone after ${took} s, job $state; $(logged "$dir") rounds logged, newest checkpoint after round ${saved:-none}"
        [ "$(logged "$dir")" -lt 30 ] || fail "[node-dies] the run had finished before n2 died"
        [ -n "$saved" ] && "$sim" inspect "$dir/checkpoint-$(printf %06d "$saved").h5" >/dev/null 2>&1 \
            || fail "[node-dies] no valid checkpoint left: $(ls "$dir")"
        both_idle 60 || fail "[node-dies] n2 did not come back: $(sinfo -N 2>&1 | tail -2)"
        resubmit node-dies "$dir" srun
    else
        fail "[node-dies] 7 rounds never logged: $(tail -3 "$work/submit/node-dies.out")"
    fi
fi

# every_process_of JOB: the pids of every process of the job's steps, batch
# shell included (what slurmstepd signals at the time limit).
every_process_of() {
    grep -lzax "SLURM_JOB_ID=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
}

# The time limit, with srun and with mpirun inside the allocation: the
# earlier SIGUSR1 to the batch shell (--signal=B:USR1@120; scancel --batch),
# on two nodes, and SIGTERM: with srun to every rank (scancel, the steps
# only), with mpirun to every process of a one-node job, as at the limit.
# (At the limit srun answers its own SIGTERM by killing its tasks, and so do
# the srun and orted that mpirun starts on other nodes: there the ranks
# cannot finish a round, and the checkpoint comes from the warning.) Each
# run writes a checkpoint of every finished round (checkpoint.every is too
# large otherwise): no round is lost.
for launcher in srun mpirun; do
    for signal in TERM USR1; do
        name=limit-$launcher-$signal
        shape=(--nodes=2 --ntasks=8 --ntasks-per-node=4)
        [ $launcher-$signal = mpirun-TERM ] && shape=(--nodes=1 --ntasks=4)
        FEDKD_SIM=$sim FEDKD_LAUNCHER=$launcher start "$name" slurm-run.sbatch fed16.json \
            "${long[@]}" --set checkpoint.every=1000 || continue
        dir=$(run_dir_of fed16 "$job")
        if ! wait_logged "$dir" 3 120; then
            fail "[$name] 3 rounds never logged: $(tail -3 "$work/submit/$name.out")"
            continue
        fi
        if [ $signal = TERM ] && [ $launcher = srun ]; then
            scancel --signal=TERM "$job"
        elif [ $signal = TERM ]; then
            # Not the srun that starts mpirun's daemon: n1 is not this
            # host's name, so mpirun starts one there even for one node,
            # which a real one-node job does not (and srun would kill it).
            for pid in $(every_process_of "$job"); do
                [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = srun ] || kill -TERM "$pid" 2>/dev/null
            done
        else
            scancel --signal=USR1 --batch "$job"
        fi
        finish "$name" 60 || fail "[$name] job $job still $state 60 s after SIG$signal"
        summary_says "$dir" interrupted \
            || fail "[$name] summary.json does not say interrupted (job $state): $(tail -4 "$work/submit/$name.out")"
        rows=$(logged "$dir") saved=$(newest_round "$dir")
        echo "SIG$signal via $launcher: job $state; $rows rounds logged, checkpoint after round ${saved:-none}; rounds lost $((rows - ${saved:-0}))"
        [ "${saved:-0}" = "$rows" ] || fail "[$name] $rows rounds logged, newest checkpoint after round ${saved:-none}"
        # Resubmitted (two of the four, to keep the test short): the same
        # result as a run never interrupted.
        [ $launcher-$signal = srun-USR1 ] || [ $launcher-$signal = mpirun-TERM ] \
            && resubmit "$name" "$dir" "$launcher"
    done
done

if [ $failures != 0 ]; then
    echo "slurm: $failures failure(s)" >&2
    exit 1
fi
echo "slurm: passed"
