"""Which worker of a multi-worker job this process is: `TF_CONFIG` checked, its role, and a bounded start-up.

TensorFlow reads the cluster from the `TF_CONFIG` environment variable (JSON):

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

Worker 0 is the chief (a `"chief"` job, if given, is the chief instead and counts as one more worker). A mistake
there would otherwise show as a hang or a gRPC error deep inside TensorFlow, so `read_tf_config` checks it first and
names what is wrong in one line. TensorFlow-free: the launcher imports it too.
"""

import dataclasses
import json
import os
import socket
import sys

from expr3d.cli import UsageError

ENV = "TF_CONFIG"
LAUNCH_HINT = ("start the workers with `python -m expr3d.launch --workers=N -- <train flags>` on one machine, or set "
               "TF_CONFIG on each machine (README: Training on several machines)")


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process in the cluster: `addresses` lists every worker in TensorFlow's order (the chief first), `rank`
    is this process's place in it (the order of the global batch's slices)."""

    task_type: str
    index: int
    addresses: tuple
    rank: int

    @property
    def num_workers(self):
        return len(self.addresses)

    @property
    def address(self):
        return self.addresses[self.rank]

    @property
    def is_chief(self):
        return self.rank == 0


def read_tf_config(text=None):
    """The `WorkerRole` `TF_CONFIG` (or `text`) describes; UsageError naming TF_CONFIG and what is wrong."""
    text = os.environ.get(ENV) if text is None else text
    if text is None or not text.strip():
        raise UsageError(f"--strategy=multi_worker needs the {ENV} environment variable (the cluster and this "
                         f"process's task): {LAUNCH_HINT}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{ENV} is not valid JSON ({error.msg} at character {error.pos}): {text[:80]!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or \
            not isinstance(config.get("task"), dict):
        raise UsageError(f'{ENV} needs "cluster" and "task" objects, e.g. {{"cluster": {{"worker": '
                         f'["host0:port", "host1:port"]}}, "task": {{"type": "worker", "index": 0}}}}')
    cluster, task = config["cluster"], config["task"]
    jobs = {}
    for job in ("chief", "worker"):
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and _valid_address(a) for a in addresses):
            raise UsageError(f'{ENV} cluster "{job}" must be a list of "host:port" strings; got {addresses!r}')
        jobs[job] = addresses
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise UsageError(f"{ENV} cluster job(s) {', '.join(other)}: expr3d trains with workers only "
                         f"(MultiWorkerMirroredStrategy: 'chief' and 'worker')")
    if len(jobs["chief"]) > 1:
        raise UsageError(f'{ENV} names {len(jobs["chief"])} chiefs; a cluster has at most one')
    addresses = jobs["chief"] + jobs["worker"]
    if not addresses:
        raise UsageError(f'{ENV} cluster lists no worker')
    repeated = sorted({a for a in addresses if addresses.count(a) > 1})
    if repeated:
        raise UsageError(f"{ENV} names {', '.join(repeated)} more than once: each worker needs its own host:port")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in ("chief", "worker"):
        raise UsageError(f'{ENV} task type {task_type!r}: expected "worker" (or "chief")')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task_type]):
        raise UsageError(f'{ENV} task index {index!r} is not one of the {len(jobs[task_type])} "{task_type}" '
                         f"addresses of the cluster")
    rank = index if task_type == "chief" else len(jobs["chief"]) + index
    return WorkerRole(task_type, index, tuple(addresses), rank)


def _valid_address(address):
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def tf_config(addresses, index):
    """The `TF_CONFIG` text of worker `index` of a cluster of `addresses` (the launcher's)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def unreachable(role, timeout=1.0):
    """The other workers' addresses that refuse a TCP connection now (their gRPC server is not up)."""
    down = []
    for address in role.addresses:
        if address == role.address:
            continue
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError:
            down.append(address)
    return down


class StartupWatchdog:
    """Ends this process with one line naming the workers that are not up when the cluster has not formed within
    `seconds` (TensorFlow itself waits for them for an hour).

    The watch runs in a small child process: while TensorFlow waits for the other workers it holds Python's GIL, so
    no thread of this process could act. The child prints the line and kills this process (SIGKILL, exit status
    137: TensorFlow's wait cannot be interrupted otherwise). Leaving the `with` block (the first collective has
    completed) or this process ending stops the child.
    """

    def __init__(self, role, seconds, program="expr3d.train"):
        self.role, self.seconds, self.program = role, seconds, program
        self._child = None

    def __enter__(self):
        import subprocess

        arguments = json.dumps({"parent": os.getpid(), "seconds": self.seconds, "program": self.program,
                                "addresses": list(self.role.addresses), "rank": self.role.rank})
        self._child = subprocess.Popen([sys.executable, "-c", "from expr3d.training.cluster import _watch; _watch()",
                                        arguments], stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        if self._child is not None:
            self._child.stdin.close()  # EOF: the child exits at once
            self._child.wait()
            self._child = None
        return False


def _watch():
    """The watchdog child (`StartupWatchdog`): waits for EOF on stdin, at most `seconds`."""
    import select
    import signal

    arguments = json.loads(sys.argv[1])
    ready, _, _ = select.select([sys.stdin], [], [], arguments["seconds"])
    if ready:
        return
    role = WorkerRole("worker", arguments["rank"], tuple(arguments["addresses"]), arguments["rank"])
    down = unreachable(role)
    who = (", ".join(f"worker {role.addresses.index(a)} ({a})" for a in down) if down
           else "a worker (every address accepts connections, but the cluster did not form)")
    print(f"{arguments['program']}: error: {who} did not come up within {arguments['seconds']:g} s "
          f"(--worker_startup_timeout); every worker of {ENV} must be started with the same command",
          file=sys.stderr, flush=True)
    os.kill(arguments["parent"], signal.SIGKILL)


__all__ = ["ENV", "LAUNCH_HINT", "StartupWatchdog", "WorkerRole", "read_tf_config", "tf_config", "unreachable"]
