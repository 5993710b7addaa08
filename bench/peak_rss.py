#!/usr/bin/python3
"""Runs a command and records its peak resident set size.

    peak_rss.py OUT_DIR COMMAND [ARG ...]

Meant to wrap each rank under mpirun
(`mpirun -np P bench/peak_rss.py DIR build/fedkd-sim ...`): the rank runs as
this script's child, and when it ends the script writes the child's
ru_maxrss (getrusage RUSAGE_CHILDREN: the largest resident set the process
ever had, in KiB) to OUT_DIR/rss-<rank>.txt, the rank taken from Open MPI's
OMPI_COMM_WORLD_RANK (or PMIX_RANK, SLURM_PROCID). The simulator is not
touched; the script's own interpreter is not counted (only waited-for
children are). SIGINT and SIGTERM are passed on to the child. Exits with the
child's status.
"""
import os
import resource
import signal
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: peak_rss.py OUT_DIR COMMAND [ARG ...]")
    out_dir, command = sys.argv[1], sys.argv[2:]
    rank = next((os.environ[k] for k in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
                 if k in os.environ), "0")
    child = subprocess.Popen(command)

    def forward(signal_number, _frame):
        child.send_signal(signal_number)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = child.wait()
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "rss-%s.txt" % rank), "w") as handle:
        handle.write("%d\n" % peak_kib)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
