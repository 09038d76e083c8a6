r"""Start a multi-worker training job on this machine: N worker processes on 127.0.0.1, each with its TF_CONFIG.

    python -m expr3d.launch --workers=2 -- --flagfile=experiments/synthetic48.flags --model_dir=runs/mw

Each worker runs `python -m expr3d.train <the flags after --> --strategy=multi_worker` with a free port of
127.0.0.1 and its own `TF_CONFIG`; their output is streamed with a `[worker K]` prefix. When one worker fails, the
others are stopped (SIGTERM, then SIGKILL after --grace_seconds) and the launcher exits with the failed worker's
status; SIGTERM or Ctrl-C to the launcher is passed on to every worker, which checkpoint the same iteration and exit
(rerun the same command to resume). Workers die with the launcher, even when it is killed (no orphans); their
temporary files (TMPDIR) are in one folder per job, removed at its end.

Workers start by fork (`--start=fork`, the default where the platform has it): the launcher imports TensorFlow and
Keras once, runs no TensorFlow op, and forks each worker, which then runs `expr3d.train` as `python -m` would -
one TensorFlow import per job instead of one per worker (~6.5 s of CPU each here). `--start=exec` starts each worker
as a fresh `python -m expr3d.train` process instead. Either way a worker is a real process with its own pid, exit
status, signals and output.

This is for trying multi-worker training and for tests; on several machines, run the same `expr3d.train` command on
each with that machine's `TF_CONFIG` (README: Training on several machines). Exit status: 0 when every worker
finished, else the first failed worker's (143 for a worker stopped by SIGTERM after checkpointing).
"""

import ctypes
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from absl import flags

from expr3d import cli
from expr3d.training import cluster

PROGRAM = "expr3d.launch"
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("workers", 2, "How many worker processes to start on 127.0.0.1.")
    flags.DEFINE_float("grace_seconds", 30.0,
                       "After a worker fails (or the launcher is stopped), how long the others get to exit after "
                       "SIGTERM before they are killed.")
    flags.DEFINE_string("program", None,
                        "The Python script each worker runs instead of `-m expr3d.train` (it takes the same flags; "
                        "tests use tests/training/train_with_hooks.py).")
    flags.DEFINE_enum("start", "fork" if hasattr(os, "fork") else "exec", ["fork", "exec"],
                      "How workers start: fork (the launcher imports TensorFlow once and forks each worker) or exec "
                      "(each worker a fresh `python -m expr3d.train` process).")
    cli.at_least("workers", 1)
    cli.positive("grace_seconds")


LAUNCHER_FLAGS = ("workers", "grace_seconds", "program", "start")


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports of `host` that are free now (bound, then released for the workers to bind)."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind((host, 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def _die_with_parent():
    """In the child, before exec: SIGKILL when the launcher dies (Linux prctl PR_SET_PDEATHSIG), in its own
    process group so a worker's stop does not reach the launcher's terminal group."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


class ForkedWorker:
    """A forked worker process, with the part of subprocess.Popen's interface the Job uses."""

    def __init__(self, pid, stdout, stderr):
        self.pid, self.stdout, self.stderr, self.returncode = pid, stdout, stderr, None

    def _reap(self, options):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, options)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self):
        return self._reap(os.WNOHANG)

    def wait(self):
        return self._reap(0)


def _run_worker(argv, program):
    """In the forked child: become `python -m expr3d.train ARGV` (or `python PROGRAM ARGV`); never returns."""
    code = 1
    try:
        from absl import flags as absl_flags

        # The launcher's own flags and parsed state go: the worker defines and parses its command's flags.
        for name in LAUNCHER_FLAGS:
            if name in absl_flags.FLAGS:
                delattr(absl_flags.FLAGS, name)
        absl_flags.FLAGS.unparse_flags()
        tempfile.tempdir = None  # TMPDIR is this worker's (the launcher's value was cached)
        if program:
            sys.argv = [program, *argv]
            sys.path[0] = os.path.dirname(os.path.abspath(program))
            runpy.run_path(program, run_name="__main__")
        else:
            sys.argv = ["expr3d.train", *argv]
            runpy.run_module("expr3d.train", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # as the interpreter does: the traceback on stderr, status 1
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _fork_worker(argv, program, env):
    """Fork a worker with `env` and its output on pipes; returns its ForkedWorker."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_read)
            os.close(err_read)
            _die_with_parent()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            for fd in (null, out_write, err_write):
                os.close(fd)
            sys.stdin = open(0, "r", closefd=False)
            sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
            sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
            sys.stdout.reconfigure(write_through=True)  # PYTHONUNBUFFERED, as an exec'd worker has
            sys.stderr.reconfigure(write_through=True)
            os.environ.clear()
            os.environ.update(env)
        except BaseException:
            os._exit(1)
        _run_worker(argv, program)
    os.close(out_write)
    os.close(err_write)
    return ForkedWorker(pid, os.fdopen(out_read, "rb"), os.fdopen(err_read, "rb"))


def _stream(pipe, prefix, out, lock):
    for line in iter(pipe.readline, b""):
        with lock:
            out.write(prefix + line.decode("utf-8", "replace").rstrip("\n").replace("\r", "\n" + prefix) + "\n")
            out.flush()
    pipe.close()


class Job:
    """The worker processes of one launch."""

    def __init__(self, train_flags, workers, program=None, grace_seconds=30.0, env=None, start="exec"):
        self.grace_seconds = grace_seconds
        addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
        worker_args = list(train_flags) + ["--strategy=multi_worker"]
        command = [sys.executable] + ([program] if program else ["-m", "expr3d.train"]) + worker_args
        if start == "fork":
            import keras  # noqa: F401 (imported once, before any thread or TensorFlow op: every worker inherits it)
            import tensorflow  # noqa: F401
        self.processes, self._threads, lock = [], [], threading.Lock()
        base = dict(os.environ if env is None else env)
        # The workers' temporary files (a non-chief worker's scratch run directory among them) go to one folder per
        # job, removed when the job ends: a killed worker cannot remove its own.
        self.scratch = tempfile.mkdtemp(prefix="expr3d-launch-")
        width = len(str(workers - 1))
        for index in range(workers):
            worker_env = dict(base, TF_CONFIG=cluster.tf_config(addresses, index), PYTHONUNBUFFERED="1",
                              TMPDIR=self.scratch)
            if start == "fork":
                process = _fork_worker(worker_args, program, worker_env)
            else:
                process = subprocess.Popen(command, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           preexec_fn=_die_with_parent)
            self.processes.append(process)
            print(f"{PROGRAM}: worker {index} at {addresses[index]}, pid {process.pid}", file=sys.stderr, flush=True)
        # The output threads start after every fork: a process that forks must not have other threads running.
        for index, process in enumerate(self.processes):
            prefix = f"[worker {index:>{width}}] "
            for pipe, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
                thread = threading.Thread(target=_stream, args=(pipe, prefix, out, lock), daemon=True)
                thread.start()
                self._threads.append(thread)

    def signal_all(self, signum):
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signum)
                except ProcessLookupError:
                    pass

    def stop(self):
        """SIGTERM every running worker, SIGKILL those still running after the grace period."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.1)
        self.signal_all(signal.SIGKILL)
        for process in self.processes:
            process.wait()

    def wait(self, stop_requested=lambda: None):
        """Wait for the workers; returns the job's exit status (module docstring)."""
        try:
            while True:
                requested = stop_requested()
                if requested:
                    print(f"{PROGRAM}: {requested.name} received; passing SIGTERM to the workers (they checkpoint "
                          f"and exit)", file=sys.stderr, flush=True)
                    self.stop()
                    return _status(self.processes, default=128 + requested.value)
                codes = [p.poll() for p in self.processes]
                failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    index, code = failed[0]
                    if any(c is None for c in codes):
                        print(f"{PROGRAM}: worker {index} exited with status {_describe(code)}; stopping the "
                              f"others", file=sys.stderr, flush=True)
                        self.stop()
                    return _exit_status(code)
                if all(c == 0 for c in codes):
                    return 0
                time.sleep(0.1)
        finally:
            if any(p.poll() is None for p in self.processes):
                self.stop()
            for thread in self._threads:
                thread.join(timeout=5)
            shutil.rmtree(self.scratch, ignore_errors=True)


def _describe(code):
    return f"{code} (killed by {signal.Signals(-code).name})" if code < 0 else str(code)


def _exit_status(code):
    return 128 - code if code < 0 else code


def _status(processes, default):
    for process in processes:
        if process.returncode:
            return _exit_status(process.returncode)
    return default


def main(argv):
    train_flags = argv[1:]
    for flag in train_flags:
        if flag.startswith("--strategy=") and flag != "--strategy=multi_worker":
            raise cli.UsageError(f"{flag}: the launcher's workers train with --strategy=multi_worker (leave "
                                 f"--strategy out)")
    if not any(flag.startswith(("--model_dir", "--flagfile")) for flag in train_flags):
        raise cli.UsageError("give the training flags after --, e.g. `python -m expr3d.launch --workers=2 -- "
                             "--flagfile=experiments/synthetic48.flags --model_dir=runs/mw`")
    if FLAGS.program is not None and not os.path.isfile(FLAGS.program):
        raise cli.UsageError(f"--program={FLAGS.program} is not a file")
    received = []
    handlers = {signum: signal.signal(signum, lambda signum, frame: received.append(signal.Signals(signum)))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        job = Job(train_flags, FLAGS.workers, program=FLAGS.program, grace_seconds=FLAGS.grace_seconds,
                  start=FLAGS.start)
        return job.wait(stop_requested=lambda: received[0] if received else None)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def run_cli():
    """`python -m expr3d.launch` and the `expr3d-launch` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
