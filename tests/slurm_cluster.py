"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd (Debian's packages),
started from a temporary folder on free ports and stopped by the PIDs started here.

What it takes in a sandbox without cgroups (learned the hard way, see issue 23): munged as the
munge user, proctrack/linuxproc and task/none (the cgroup plugins report a job COMPLETED that
never ran and drain the node), the node line from `slurmd -C` with RealMemory cut to 90%."""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "sinfo", "squeue", "scancel")
MUNGE_KEY = Path("/etc/munge/munge.key")


def sbin(name: str) -> str | None:
    """A command's path, the daemons' sbin folders included (root's PATH may lack them)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def unavailable_reason() -> str | None:
    """Why a cluster cannot start here, or None when it can."""
    if os.geteuid() != 0:
        return "the Slurm daemons need root (slurmd runs jobs as their users)"
    missing = [name for name in DAEMONS + CLIENTS if not sbin(name)]
    if missing:
        return (
            f"Slurm is not installed (missing {', '.join(sorted(set(missing)))}); "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so no daemon outlives it."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class OneNodeCluster:
    """`with OneNodeCluster() as cluster:` a cluster whose commands see it through cluster.env
    (SLURM_CONF); the daemons are stopped by their PIDs on exit, jobs cancelled first."""

    def __init__(self, cpus_per_node: int | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="vb-slurm-"))
        self.root.chmod(0o755)  # the munge user must reach its socket folder
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.cpus_per_node = cpus_per_node
        self.timings: dict[str, float] = {}

    # -- start ------------------------------------------------------------------------------
    def __enter__(self):
        start = time.monotonic()
        try:
            self.start_munge()
            self.write_config()
            self.start("slurmctld", [sbin("slurmctld"), "-D", "-f", str(self.conf)])
            self.start("slurmd", [sbin("slurmd"), "-D", "-f", str(self.conf)])
            self.wait_until_idle()
        except BaseException:
            self.stop()
            raise
        self.timings["up_s"] = time.monotonic() - start
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def start(self, name: str, command: list[str], **kwargs) -> None:
        with open(self.root / f"{name}.out", "w") as log:  # the tests start no threads before this
            self.processes[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, preexec_fn=die_with_parent, **kwargs
            )  # noqa: PLW1509

    def start_munge(self) -> None:
        munge = self.root / "munge"
        munge.mkdir()
        munge.chmod(0o755)  # munged: "execute permissions for all required" on its socket folder
        shutil.chown(munge, "munge", "munge")
        if not MUNGE_KEY.exists():
            subprocess.run([sbin("mungekey"), "--create", "--keyfile", str(MUNGE_KEY)], check=True)
            shutil.chown(MUNGE_KEY, "munge", "munge")
        self.munge_socket = munge / "munge.socket"
        # munged refuses to run as root: the munge user, in the foreground so that its PID is ours.
        self.start(
            "munged",
            [
                sbin("munged"),
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={munge / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--key-file={MUNGE_KEY}",
            ],
            user="munge",
            group="munge",
        )
        self.wait_for(lambda: self.munge_socket.exists(), 30, "munged to open its socket")

    def node_line(self) -> str:
        """This machine as slurmd sees it, with RealMemory cut to 90% (slurmd drains a node whose
        memory falls short of the configured figure)."""
        out = subprocess.run([sbin("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        line = out.splitlines()[0].strip()
        line = re.sub(r"RealMemory=(\d+)", lambda m: f"RealMemory={int(m.group(1)) * 9 // 10}", line)
        if self.cpus_per_node:
            line = re.sub(r"CPUs=\d+", f"CPUs={self.cpus_per_node}", line)
        return line

    def write_config(self) -> None:
        node = self.node_line()
        self.node_name = node.split()[0].split("=", 1)[1]
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        self.conf.write_text(f"""# one-node test cluster (tests/slurm_cluster.py)
ClusterName=visionbench
SlurmctldHost={socket.gethostname().split(".")[0]}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "slurmctld.log"}
SlurmdLogFile={self.root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
MinJobAge=600
{node} State=UNKNOWN
PartitionName=debug Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP
""")

    def wait_for(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"waiting for {what}: {dead} exited\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds:.0f} s for {what}\n{self.logs()}")
            time.sleep(0.3)

    def wait_until_idle(self) -> None:
        def idle():
            out = self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            return out == "idle"

        self.wait_for(idle, 120, "the node to be idle")

    # -- use --------------------------------------------------------------------------------
    def run(self, *command, check=True, timeout=120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sbin(command[0]) or command[0], *map(str, command[1:])],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def job(self, job_id: str) -> list[dict]:
        """`scontrol show job` as one dict per job record (an array gives one per task)."""
        out = self.run("scontrol", "show", "-o", "job", job_id, check=False).stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def wait_for_jobs(self, job_ids, seconds: float = 900) -> dict[str, list[dict]]:
        """Poll scontrol (sbatch --wait is slow) until every record of the jobs has ended."""
        ended = (
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        )
        records = {}

        def done():
            for j in job_ids:
                records[j] = self.job(j)
            return all(recs and all(r.get("JobState") in ended for r in recs) for recs in records.values())

        self.wait_for(done, seconds, f"jobs {', '.join(job_ids)} to end")
        return records

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log", "munged.out", "slurmctld.out", "slurmd.out"):
            path = self.root / name
            if path.exists():
                parts.append(
                    f"--- {name} (last lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                )
        return "\n".join(parts)

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        start = time.monotonic()
        if all(name in self.processes and self.processes[name].poll() is None for name in ("slurmctld", "slurmd")):
            # A test that failed half-way may leave jobs: cancel them (this cluster's only) while slurmd can.
            self.run("scancel", "--full", "--user", "root", check=False, timeout=30)
            deadline = time.monotonic() + 30
            while self.run("squeue", "-h", check=False, timeout=30).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self.timings["down_s"] = time.monotonic() - start
        shutil.rmtree(self.root, ignore_errors=True)
