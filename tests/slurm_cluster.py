"""A private single-node SLURM cluster for the tests (Debian's ``slurmctld slurmd slurm-client munge``).

:class:`Cluster` writes a minimal ``slurm.conf`` into a temporary folder, starts ``munged`` (as the
``munge`` user, with the packaged key), ``slurmctld`` and ``slurmd`` in the foreground, and stops
each of them by pid. Every file they write (state, spool, logs, pid files, the munge socket) lives
in that folder, so nothing is left behind. It needs root: :func:`unavailable_reason` says why it
cannot run on this machine, and the tests skip with that reason.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MUNGE_KEY = Path("/etc/munge/munge.key")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
# Reasons a pending job gives when it can never start on this cluster: waiting is pointless.
STUCK = {"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "ReqNodeNotAvail",
         "DependencyNeverSatisfied", "InvalidQOS"}
PR_SET_PDEATHSIG = 1  # prctl(2)
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}


class ClusterError(RuntimeError):
    """The cluster did not start, or a job did not finish in time (the message holds the logs)."""


def which(name: str) -> str | None:
    """The path of ``name`` on PATH or in the sbin folders where Debian installs the daemons."""
    return shutil.which(name, path=SEARCH_PATH)


def unavailable_reason() -> str | None:
    """Why a private cluster cannot start here (None when it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "SLURM tests start munged, slurmctld and slurmd: they need root (sudo .ci/run)"
    missing = [name for name in DAEMONS + CLIENTS if which(name) is None]
    if missing:
        return f"SLURM not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (the Debian munge package creates it)"
    if not MUNGE_KEY.is_file():
        return f"no munge key at {MUNGE_KEY} (the Debian munge package creates it)"
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as a SLURM node (``slurmd -C``), reached on the loopback address."""
    out = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("NodeName="))
    return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"


def parse_record(line: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol -o show job`` line (the first word of each value)."""
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w:/]*)=(\S*)", line))


def _die_with_parent() -> None:
    """In a daemon before it starts: SIGTERM when the test process dies, even if it is killed."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Cluster:
    """munged, slurmctld and slurmd on this machine, configured and logging under ``root``.

    :param root: an empty folder for the configuration and everything the daemons write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}
        for name in list(self.env):  # a test run inside a SLURM job must not talk to that cluster
            if name.startswith(("SBATCH_", "SLURM_")) and name != "SLURM_CONF":
                del self.env[name]

    # ------------------------------------------------------------------ daemons
    def write_conf(self) -> None:
        """The minimal ``slurm.conf``: one node, no accounting, requeued jobs rerun in seconds."""
        hostname = node_line().split()[0].split("=", 1)[1]
        lines = [
            "ClusterName=mmmtest",
            f"SlurmctldHost={hostname}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SchedulerParameters=batch_sched_delay=0",
            "DependencyParameters=kill_invalid_depend",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "KillWait=5",  # a requeued job's processes get SIGKILL 5 s after SIGTERM (default 30 s)
            "MinJobAge=600",  # finished jobs stay visible to `scontrol show job` for the whole session
            node_line(),
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; return once the node accepts jobs.

        :raises ClusterError: when a daemon exits or the node is not idle within ``timeout_s``.
        """
        munge = pwd.getpwnam("munge")
        munge_dir = self.munge_socket.parent
        munge_dir.mkdir(parents=True)
        os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
        self.root.chmod(0o755)  # munged (user munge) reaches its folder through this one
        for name in ("state", "spool"):
            (self.root / name).mkdir()
        self.write_conf()
        self._spawn("munged", [which("munged"), "--foreground", f"--socket={self.munge_socket}",
                               f"--key-file={MUNGE_KEY}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--log-file={munge_dir / 'munged.log'}", f"--seed-file={munge_dir / 'munged.seed'}"],
                    user=munge.pw_uid, group=munge.pw_gid)
        self._wait_for(self.munge_socket.exists, timeout_s, "munged socket")
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait_for(lambda: self._run(["scontrol", "ping"], check=False).returncode == 0, timeout_s, "slurmctld")
        self._spawn("slurmd", [which("slurmd"), "-D", "-f", str(self.conf)])
        self._wait_for(lambda: "idle" in self._run(["sinfo", "-h", "-o", "%t"], check=False).stdout, timeout_s,
                       "an idle node")

    def _spawn(self, name: str, cmd: list[str], **kwargs) -> None:
        log = (self.root / f"{name}.stdout").open("wb")
        self.processes[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=self.env, cwd=self.root, start_new_session=True,
                                                preexec_fn=_die_with_parent, **kwargs)
        log.close()

    def _wait_for(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.daemon_logs()}")
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(f"no {what} after {timeout_s:.0f} s:\n{self.daemon_logs()}")

    def daemon_logs(self, num_lines: int = 15) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.stdout")) + \
                sorted(self.munge_socket.parent.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-num_lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every daemon this cluster started, by pid: slurmd, slurmctld, then munged.

        Jobs still running are cancelled first, so none outlives the cluster.
        """
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self._run(["scancel", "--full", "--user=root"], check=False)
            deadline = time.monotonic() + 15
            while self.queue() and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def leftover_processes(self) -> list[str]:
        """Running processes of this cluster: daemons and job processes (their environment names its
        ``slurm.conf``). None once it is stopped."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = (proc / "environ").read_bytes().decode(errors="replace")
            except OSError:  # ended meanwhile, or not ours to read
                continue
            if str(self.root) in cmdline or str(self.conf) in environ:
                found.append(f"{proc.name}: {cmdline.strip()[:200]}")
        return found

    # ------------------------------------------------------------------ clients
    def _run(self, cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("env", self.env)
        return subprocess.run([which(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True, check=check,
                              timeout=60, **kwargs)

    def sbatch(self, *args: str, env: dict[str, str] | None = None) -> int:
        """Submit from the repository root as a user would; return the job id.

        :param args: sbatch options, the script and its arguments.
        :param env: variables added to the submitting environment (the job inherits them).
        :raises ClusterError: when sbatch refuses the job.
        """
        result = self._run(["sbatch", "--parsable", *args], check=False, cwd=REPO_ROOT, env={**self.env, **(env or {})})
        if result.returncode != 0:
            raise ClusterError(f"sbatch {' '.join(args)} failed: {result.stderr.strip()}")
        return int(result.stdout.strip().split(";")[0])

    def scontrol(self, *args: str) -> str:
        """Run ``scontrol ARGS`` and return its output."""
        return self._run(["scontrol", *args]).stdout

    def queue(self) -> list[str]:
        """Job ids (``123`` or ``123_4``) of every pending or running job."""
        return self._run(["squeue", "-h", "-o", "%i"], check=False).stdout.split()

    def jobs(self, since: int = 0) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones too), with an id above ``since``."""
        out = self._run(["scontrol", "-o", "show", "job"], check=False).stdout
        records = [parse_record(line) for line in out.splitlines() if line.startswith("JobId=")]
        return sorted((r for r in records if int(r["JobId"]) > since), key=lambda r: int(r["JobId"]))

    def job(self, job_id: int | str) -> dict[str, str]:
        """The record of one job (``123`` or ``123_4``); empty once the controller forgot it."""
        out = self._run(["scontrol", "-o", "show", "job", str(job_id)], check=False).stdout
        return next((parse_record(line) for line in out.splitlines() if line.startswith("JobId=")), {})

    def last_job_id(self) -> int:
        """The highest job id so far (0 before the first job)."""
        return max((int(r["JobId"]) for r in self.jobs()), default=0)

    def wait_idle(self, timeout_s: float, poll_s: float = 0.5) -> None:
        """Wait until no job is pending or running (jobs submitted by jobs included).

        :raises ClusterError: after ``timeout_s``, with the queue and the job logs.
        """
        self.wait_for(lambda: not self.queue(), timeout_s, "empty queue", poll_s, stop_when_idle=False)

    def wait_for(self, ready, timeout_s: float, what: str, poll_s: float = 0.2, stop_when_idle: bool = True) -> None:
        """Poll ``ready()`` until it is true.

        :raises ClusterError: after ``timeout_s``, when a job is pending for a reason that never
            passes, or (``stop_when_idle``) when the queue empties first; with the job logs.
        """
        deadline = time.monotonic() + timeout_s
        while not ready():
            queue = self.queue()
            stuck = [j["JobId"] for j in self.jobs() if j.get("JobState") == "PENDING" and j.get("Reason") in STUCK]
            if time.monotonic() > deadline or stuck or (stop_when_idle and not queue):
                raise ClusterError(f"no {what} (queue: {queue}, never starting: {stuck})\n{self.job_logs()}")
            time.sleep(poll_s)

    def job_logs(self, since: int = 0, num_lines: int = 30) -> str:
        """Name, state and the last lines of the log of every job above ``since``."""
        parts = []
        for job in self.jobs(since):
            head = (f"--- job {job['JobId']} {job.get('JobName')} {job.get('JobState')} ({job.get('Reason')}) "
                    f"exit {job.get('ExitCode')}; submitted {job.get('SubmitTime')}, started {job.get('StartTime')}, "
                    f"ended {job.get('EndTime')}, restarts {job.get('Restarts')}")
            path = Path(job.get("StdOut", ""))
            tail = path.read_text(errors="replace").splitlines()[-num_lines:] if path.is_file() else ["(no log)"]
            parts.append("\n".join([head, *tail]))
        return "\n".join(parts)

    def assert_all_completed(self, since: int) -> list[dict[str, str]]:
        """The jobs above ``since``; each must have COMPLETED with exit code 0.

        :raises AssertionError: naming the jobs that did not, with every job's log.
        """
        jobs = self.jobs(since)
        bad = [j for j in jobs if j.get("JobState") != "COMPLETED" or j.get("ExitCode") != "0:0"]
        assert jobs and not bad, f"jobs not completed: {[(j['JobId'], j.get('JobName')) for j in bad]}\n" + \
            self.job_logs(since)
        return jobs
