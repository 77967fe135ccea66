"""The launcher stops what a run started and nothing else (a researcher's other jobs share the machine)."""

import os
import subprocess
import sys
import time

from coars_verl.cpu.launch import stop_process_group

SPAWN_TREE = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_stopping_a_run_ends_its_whole_group_and_spares_other_processes():
    run = subprocess.Popen([sys.executable, "-c", SPAWN_TREE], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        time.sleep(1.5)
        members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == run.pid]
        assert len(members) >= 2  # the run and its child
        stop_process_group(run.pid, grace_s=5)
        run.wait(timeout=10)
        time.sleep(0.5)
        assert not any(_alive(pid) for pid in members if pid != run.pid)
        assert _alive(bystander.pid)
        stop_process_group(run.pid)  # a group that is gone is fine
    finally:
        bystander.kill()
        bystander.wait()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
