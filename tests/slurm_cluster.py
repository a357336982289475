"""A real single-node Slurm cluster for the tests, from Debian's packages (``slurm-wlm``, ``munge``,
``slurmdbd``, ``mariadb-server``; ``.ci/run`` installs them when it runs as root).

``Cluster(root).start()`` brings up, in this order, each as a foreground child of this process with its
state, sockets and logs under ``root``: ``munged`` (a fresh key), ``mariadbd`` (a fresh data directory
on a free TCP port of 127.0.0.1, no grant tables), ``slurmdbd`` (so that ``sacct`` reports Slurm's real
end states), ``slurmctld`` and ``slurmd`` (one node with this machine's CPUs and memory, partition
``debug``; ``proctrack/linuxproc``, ``select/cons_tres`` with memory as a consumable, ``task/cgroup``
with ``ConstrainRAMSpace`` (cgroup v1) so that a task over its ``--mem`` ends OUT_OF_MEMORY; Slurm leaves
an empty ``slurm`` group under ``/sys/fs/cgroup/memory``). The node declares 8 CPUs whatever the machine
has (``config_overrides``), so that sleeping test tasks can run side by side.
Client commands find it through ``SLURM_CONF`` (``Cluster.env``). ``stop()`` ends every daemon by the PID
it started, newest first. ``unavailable()`` says why a cluster cannot be brought up here (None: it can).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def unavailable() -> str | None:
    """Why a test cluster cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (its daemons run as root; CI runs the tests as root)"
    missing = [name for name in DAEMONS if which(name) is None]
    if missing:
        return (f"the Slurm test cluster needs {', '.join(missing)}: apt-get install slurm-wlm munge "
                "slurmdbd mariadb-server (.ci/run does)")
    return None


def _die_with_parent() -> None:
    """In the daemon's child before exec: SIGTERM when this process ends, however it ends (Linux's
    PR_SET_PDEATHSIG), so that a killed test run leaves no cluster behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()  # a cgroup directory goes only when no process is left in it
    except OSError:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024  # leave 1 GiB to the system
    raise OSError("no MemTotal in /proc/meminfo")


class Cluster:
    """One node (this machine), partition ``debug``, accounting through slurmdbd on MariaDB."""

    def __init__(self, root: Path, cpus: int = 8):
        self.root, self.node = Path(root), socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "db")}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.cpus = cpus
        self.first_job_id = int.from_bytes(os.urandom(3), "big") + 1_000_000

    def path(self, name: str) -> str:
        return str(self.root / name)

    def start(self, wait_s: float = 90.0) -> Cluster:
        for folder in ("state", "spool", "db", "logs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._write_configs()
        try:
            self._munge()
            self._mariadb(wait_s)
            self._spawn("slurmdbd", [which("slurmdbd"), "-D"])  # reads slurmdbd.conf beside SLURM_CONF
            self._wait(lambda: self._listening(self.ports["dbd"]), wait_s, "slurmdbd")
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", [which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
            self._wait(self._idle, wait_s, "the node to come up idle")
            self._wait(self._accounting, wait_s, "sacct")
        except BaseException:
            self.stop()
            raise
        return self

    def _write_configs(self) -> None:
        p, cpus = self.ports, self.cpus
        self.conf.write_text("\n".join([
            # job ids of its own: Slurm names its memory cgroups job_<id>, and an earlier cluster's leftover
            # group of the same id makes the task fail to start (and drains the node)
            "ClusterName=locosttest", f"FirstJobId={self.first_job_id}",
            f"SlurmctldHost={self.node}(127.0.0.1)", "SlurmUser=root",
            "SlurmdUser=root", f"SlurmctldPort={p['ctld']}", f"SlurmdPort={p['slurmd']}",
            "AuthType=auth/munge", f"AuthInfo=socket={self.path('munge.sock')}",
            f"StateSaveLocation={self.path('state')}", f"SlurmdSpoolDir={self.path('spool')}",
            f"SlurmctldPidFile={self.path('slurmctld.pid')}", f"SlurmdPidFile={self.path('slurmd.pid')}",
            f"SlurmctldLogFile={self.path('logs/slurmctld.log')}",
            f"SlurmdLogFile={self.path('logs/slurmd.log')}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/cgroup", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/linux", "JobAcctGatherFrequency=task=1",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={p['dbd']}", f"AccountingStoragePass={self.path('munge.sock')}",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill", "ReturnToService=2", "KillWait=5", "OverTimeLimit=0",
            "MinJobAge=600", "InactiveLimit=0", "SlurmctldDebug=info", "SlurmdDebug=info",
            "SchedulerParameters=sched_interval=2", "PrologFlags=NoHold",
            # more CPUs than the machine has (config_overrides): several sleeping test tasks at once
            "SlurmdParameters=config_overrides",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mib()} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP", ""]))
        # memory enforced by a cgroup (v1) per step, whose OOM events Slurm reports as OUT_OF_MEMORY
        # (jobacct_gather's OverMemoryKill under task/none ends such a task FAILED 9:0 instead)
        (self.root / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n"
                                               "ConstrainRAMSpace=yes\nConstrainSwapSpace=yes\n"
                                               "AllowedSwapSpace=0\n")
        dbd = self.root / "slurmdbd.conf"
        dbd.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={self.path('munge.sock')}", "DbdHost=localhost",
            "DbdAddr=127.0.0.1", f"DbdPort={p['dbd']}", "SlurmUser=root",
            f"PidFile={self.path('slurmdbd.pid')}", f"LogFile={self.path('logs/slurmdbd.log')}",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={p['db']}",
            "StorageUser=root", "StorageLoc=slurm_acct_db", ""]))
        dbd.chmod(0o600)

    def _munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._spawn("munged", [which("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.path('munge.sock')}", f"--pid-file={self.path('munged.pid')}",
                               f"--seed-file={self.path('munge.seed')}",
                               f"--log-file={self.path('logs/munged.log')}"])
        self._wait(lambda: Path(self.path("munge.sock")).exists(), 30, "munged")

    def _mariadb(self, wait_s: float) -> None:
        data = self.path("db")
        subprocess.run([which("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=wait_s)
        self._spawn("mariadbd", [which("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
                                 "--bind-address=127.0.0.1", f"--port={self.ports['db']}",
                                 f"--socket={self.path('mysql.sock')}", "--skip-grant-tables",
                                 f"--log-error={self.path('logs/mariadb.log')}",
                                 f"--pid-file={self.path('mariadb.pid')}",
                                 "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"])
        self._wait(lambda: self._listening(self.ports["db"]), wait_s, "mariadbd")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.path(f"logs/{name}.out"), "ab")  # noqa: SIM115 (the daemon's, closed by stop)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self.procs.append((name, proc))

    def _wait(self, ready, wait_s: float, what: str) -> None:
        deadline = time.monotonic() + wait_s
        while not ready():
            dead = [name for name, proc in self.procs if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"Slurm test cluster: waiting for {what}, {dead or 'timed out'}; "
                                   f"logs in {self.root / 'logs'}")
            time.sleep(0.3)

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def run(self, *argv: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its stdout."""
        done = subprocess.run([which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def _idle(self) -> bool:
        return self.run("sinfo", "-h", "-o", "%T", check=False).strip() == "idle"

    def _accounting(self) -> bool:
        done = subprocess.run([which("sacct"), "-n", "-X"], env=self.env, capture_output=True, timeout=60)
        return done.returncode == 0

    def sacct(self, job_id: str) -> dict[str, tuple[str, str]]:
        """Every task of job (array) ``job_id``: {task id: (State, Elapsed)} as ``sacct`` reports them."""
        out = self.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State,Elapsed")
        return {line.split("|")[0]: tuple(line.split("|")[1:3]) for line in out.splitlines() if line}

    def stop(self) -> None:
        """Cancel this cluster's jobs (their processes are slurmstepd's, not ours), then end every daemon
        this object started, by PID, newest first (SIGTERM, then SIGKILL after 20 s)."""
        if any(name == "slurmd" and proc.poll() is None for name, proc in self.procs):
            try:
                self.run("scancel", "--user", "root", check=False)
                self._wait(lambda: not self.run("squeue", "-h", check=False).strip(), 30, "jobs to end")
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        """Remove the empty memory cgroups Slurm left for this cluster's jobs (ids from FirstJobId on)."""
        for job in Path("/sys/fs/cgroup").glob("*/slurm*/uid_*/job_*"):
            if job.name[4:].isdigit() and int(job.name[4:]) >= self.first_job_id:
                for group in sorted((d for d in job.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
                    _rmdir(group)
                _rmdir(job)
