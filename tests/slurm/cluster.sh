#!/usr/bin/env bash
# A private single-node SLURM cluster for the tests: no systemd, no cgroups, no docker.
#
#   ROOT=/some/empty/dir tests/slurm/cluster.sh          # start (default mode)
#   ROOT=/same/dir       tests/slurm/cluster.sh stop     # stop and clean up
#
# Everything (munge key and socket, slurm.conf, state, pids, logs) lives under $ROOT; the daemons
# listen on private ports 16817/16818 so this can run beside a system SLURM. Clients find the
# cluster through SLURM_CONF=$ROOT/etc/slurm.conf. tests/slurm/conftest.py drives this script.
set -euo pipefail

MODE=${1:-start}
ROOT=${ROOT:?set ROOT to an empty directory}
ROOT=$(cd "$ROOT" 2>/dev/null && pwd || echo "$ROOT")
NODE=${NODE:-localhost}            # must resolve: submitit takes MASTER_ADDR from the nodelist
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-16817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-16818}
START_TIMEOUT=${START_TIMEOUT:-60}
export SLURM_CONF=$ROOT/etc/slurm.conf

dump_logs() {
    for f in "$ROOT"/log/munged.log "$ROOT"/log/slurmctld.log "$ROOT"/log/slurmd.log; do
        [ -f "$f" ] || continue
        echo "===== $f (last 60 lines) =====" >&2
        tail -n 60 "$f" >&2 || true
    done
}

# Pids of the slurm daemons (slurmctld, slurmscriptd, slurmd, slurmstepd) and munged that belong to
# this ROOT: their command line names it (daemons started with -f/--socket), or their environment
# carries our SLURM_CONF (slurmscriptd and slurmstepd, which inherit it from their parent daemon).
root_pids() {
    local pid cmd
    for pid in $(pgrep -x 'slurmctld|slurmscriptd|slurmd|slurmstepd|munged' 2>/dev/null || true); do
        cmd=$( { tr '\0' ' ' < /proc/$pid/cmdline; } 2>/dev/null || true)
        if [[ "$cmd" == *"$ROOT/"* ]] \
           || { tr '\0' '\n' < /proc/$pid/environ; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
            echo "$pid"
        fi
    done
}

pid_from() { [ -f "$1" ] && cat "$1" 2>/dev/null || true; }

stop() {
    if [ -f "$SLURM_CONF" ]; then
        # Cancel everything, give the steps a moment, then shut both daemons down.
        timeout 15 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 10); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || true)" ] && break
            sleep 1
        done
        timeout 15 scontrol shutdown >/dev/null 2>&1 || true
    fi
    local pid
    for _ in $(seq 10); do
        [ -z "$(root_pids | grep -v -x -F "$(pid_from "$ROOT/run/munged.pid")" || true)" ] && break
        sleep 0.5
    done
    # munged last: slurmctld needs it while shutting down.
    pid=$(pid_from "$ROOT/run/munged.pid")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    sleep 0.5
    # Anything still alive from this ROOT (hung slurmstepd, a daemon that ignored shutdown).
    for pid in $(root_pids); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in $(root_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -n "$(root_pids)" ]; then
        echo "cluster.sh stop: processes still alive: $(root_pids | tr '\n' ' ')" >&2
        return 1
    fi
    return 0
}

start() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS (set in xdist workers)
    mem=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) - 1024 ))
    [ "$mem" -ge 1024 ] || mem=1024
    mkdir -p "$ROOT"/{etc,run,log,spool/ctld,spool/d,munge}

    # 1) munge with a private key and a private socket.
    if [ ! -f "$ROOT/etc/munge.key" ]; then
        dd if=/dev/urandom bs=1 count=1024 of="$ROOT/etc/munge.key" status=none
        chmod 400 "$ROOT/etc/munge.key"
    fi
    chmod 700 "$ROOT/munge"
    munged --force --socket="$ROOT/run/munge.sock" --key-file="$ROOT/etc/munge.key" \
           --pid-file="$ROOT/run/munged.pid" --log-file="$ROOT/log/munged.log" \
           --seed-file="$ROOT/munge/seed"

    # 2) slurm.conf
    cat > "$SLURM_CONF" <<CONF
ClusterName=testcluster
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$ROOT/run/munge.sock
CredType=cred/munge
StateSaveLocation=$ROOT/spool/ctld
SlurmdSpoolDir=$ROOT/spool/d
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$ROOT/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
KillWait=10
MinJobAge=300
DefMemPerCPU=1024
NodeName=$NODE NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

    # 3) daemons (both daemonize; -N names the node explicitly)
    if ! slurmctld -f "$SLURM_CONF" || ! slurmd -f "$SLURM_CONF" -N "$NODE"; then
        echo "cluster.sh: a SLURM daemon failed to start" >&2
        dump_logs
        stop || true
        exit 1
    fi
    local i
    for i in $(seq "$START_TIMEOUT"); do
        if timeout 5 sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "cluster.sh: node not idle after ${START_TIMEOUT}s; sinfo says:" >&2
    timeout 5 sinfo >&2 || true
    dump_logs
    stop || true
    exit 1
}

case "$MODE" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: ROOT=dir $0 [start|stop]" >&2; exit 2 ;;
esac
