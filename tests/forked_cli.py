"""Run `python -m expr3d.X ARGS` (or `python SCRIPT ARGS`, `python -c CODE ARGS`) as a real child process that starts from an interpreter
which has already imported TensorFlow and Keras, instead of paying their ~6 s import in every CLI test.

Why: the suite runs about a hundred CLI processes, and most of each one is TensorFlow's import (measured here: 6.5 s
of CPU per `import tensorflow, keras`, out of the 2-core machine's budget for the whole suite). A server process per
pytest worker imports them once and, for each request, forks a child that sets the working directory, environment,
stdout/stderr and `sys.argv` as the command line would, then runs the module as `__main__` with `runpy` - the same
code path `python -m` takes after start-up. The child is an ordinary process: its own pid, exit status (or -signal
when killed), signal handlers (SIGTERM/SIGKILL tests send real signals to it), files and memory.

What differs from a fresh `python -m`: TensorFlow's C++ start-up lines were printed by the server, not the child
(tests of what a user sees at start-up, `test_cli_conventions.py`, keep real `python -m` processes), and
TensorFlow's C++ log stays off whatever `TF_CPP_MIN_LOG_LEVEL` the test sets (see _SERVER_LOG_LEVEL), and
`KERAS_BACKEND` takes the server's value (a server is kept per value). The server
runs no TensorFlow op before forking, so the children inherit no runtime state (TensorFlow's thread pools start
lazily, in the child).

    from tests import forked_cli
    done = forked_cli.run(["-m", "expr3d.train", ...], cwd=REPO, env=env, capture_output=True, text=True)
    process = forked_cli.Popen(["-m", "expr3d.train", ...], cwd=REPO, env=env, stdout=log_file)

`EXPR3D_TEST_FORK=0` in the environment runs every such command as a plain subprocess instead.
"""
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

_PRELOAD_ENV = ("KERAS_BACKEND",)
# TensorFlow's C++ log level is fixed when it is imported, in the server: 3 (off), as `expr3d.quiet` makes it for a
# command a user runs. (At 2 the children print a "failed call to cuInit" error line that a fresh command, whose
# start-up lines `expr3d.quiet` drops, does not print.)
_SERVER_LOG_LEVEL = "3"
_SERVERS = {}
_LOCK = threading.Lock()
_OUTPUTS = []  # the temporary directory that holds captured outputs (made on first use, removed at exit)


def enabled():
    return os.environ.get("EXPR3D_TEST_FORK", "1") != "0"


# --- the server (runs in its own process: `python tests/forked_cli.py`) ------------------------------------------

def _child(request):
    """In the forked child: become the requested command and exit with its status (never returns)."""
    import runpy
    import traceback

    code = 1
    try:
        os.setpgid(0, 0)  # its own process group, like a fresh process started by the test (killpg stays local)
        for name in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(name, signal.default_int_handler if name == signal.SIGINT else signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(handle, fd)
            os.close(handle)
        unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        if unbuffered:
            sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
        argv = request["argv"]
        if argv[0] == "-m":
            import importlib.util

            sys.path[0] = request["cwd"]
            spec = importlib.util.find_spec(argv[1])
            sys.argv = [spec.origin if spec and spec.origin else argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.path[0] = ""
            sys.argv = ["-c", *argv[2:]]
            main = type(sys)("__main__")
            sys.modules["__main__"] = main
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        else:
            script = os.path.abspath(argv[0])
            sys.path[0] = os.path.dirname(script)
            sys.argv = [argv[0], *argv[1:]]
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter does: the traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve():
    """Read one JSON request per line on stdin, fork a child for each; answer {"id", "pid"} at once and
    {"id", "returncode"} when it ends. Single-threaded: children are reaped by polling between reads."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    children = {}
    buffer = b""
    stdin = sys.stdin.fileno()
    open_input = True
    while open_input or children:
        if open_input:
            readable, _, _ = select.select([stdin], [], [], 0.02)
            if readable:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    open_input = False
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _child(request)
                    children[pid] = request["id"]
                    out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
                    out.flush()
        else:
            time.sleep(0.02)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            out.write(json.dumps({"id": children.pop(pid), "returncode": returncode}) + "\n")
            out.flush()


# --- the client (in the pytest worker) ---------------------------------------------------------------------------

class _Server:
    def __init__(self, preload_env):
        env = dict(os.environ, **preload_env, TF_CPP_MIN_LOG_LEVEL=_SERVER_LOG_LEVEL)
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        ready = json.loads(self.process.stdout.readline() or b"{}")
        if "ready" not in ready:
            raise RuntimeError("tests/forked_cli.py: the fork server did not start")
        self.lock = threading.Lock()
        self.next_id = 0
        self.events = {}  # id -> {"pid": Event, ...}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            message = json.loads(line)
            with self.lock:
                state = self.events.get(message["id"])
            if state is None:
                continue
            if "pid" in message:
                state["pid"] = message["pid"]
                state["started"].set()
            else:
                state["returncode"] = message["returncode"]
                state["done"].set()
        with self.lock:  # the server died: nothing more will arrive
            for state in self.events.values():
                state.setdefault("returncode", -signal.SIGKILL)
                state["started"].set()
                state["done"].set()

    def start(self, argv, cwd, env, stdout_path, stderr_path):
        with self.lock:
            self.next_id += 1
            ident = self.next_id
            state = {"started": threading.Event(), "done": threading.Event()}
            self.events[ident] = state
            request = {"id": ident, "argv": list(argv), "cwd": os.path.abspath(cwd), "env": dict(env),
                       "stdout": stdout_path, "stderr": stderr_path}
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        state["started"].wait()
        return state


def _server(env):
    key = tuple(env.get(name, "") for name in _PRELOAD_ENV)
    with _LOCK:
        server = _SERVERS.get(key)
        if server is None or server.process.poll() is not None:
            server = _SERVERS[key] = _Server({name: value for name, value in zip(_PRELOAD_ENV, key) if value})
        return server


@atexit.register
def _stop_servers():
    for server in _SERVERS.values():
        try:
            server.process.stdin.close()
            server.process.wait(timeout=5)
        except Exception:
            server.process.kill()
    for directory in _OUTPUTS:
        shutil.rmtree(directory, ignore_errors=True)


class Popen:
    """The part of `subprocess.Popen` the tests use, for a forked `python ARGV` (argv without the interpreter).

    stdout/stderr: None (inherit: discarded here), subprocess.PIPE (read with `communicate`), subprocess.STDOUT
    (stderr only) or an open file.
    """

    def __init__(self, argv, cwd=None, env=None, stdout=None, stderr=None, text=False, errors=None, **_):
        self.args = argv
        self.text = text or errors is not None
        self.errors = errors or "strict"
        self.returncode = None
        if not _OUTPUTS:
            _OUTPUTS.append(tempfile.mkdtemp(prefix="forked-cli-"))
        self._temp = tempfile.mkdtemp(dir=_OUTPUTS[0])
        self._paths = {}
        for name, target in (("stdout", stdout), ("stderr", stderr)):
            if target is subprocess.STDOUT:
                self._paths[name] = self._paths["stdout"]
            elif target is subprocess.PIPE or target is None:
                self._paths[name] = os.path.join(self._temp, name)
            else:  # an open file: the child appends to it
                target.flush()
                self._paths[name] = target.name
        self._capture = {name: target is subprocess.PIPE for name, target in (("stdout", stdout), ("stderr", stderr))}
        env = dict(os.environ if env is None else env)
        self._state = _server(env).start(argv, cwd or os.getcwd(), env, self._paths["stdout"], self._paths["stderr"])
        self.pid = self._state["pid"]

    def poll(self):
        if self._state["done"].is_set():
            self.returncode = self._state["returncode"]
        return self.returncode

    def wait(self, timeout=None):
        if not self._state["done"].wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.poll()

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def _read(self, name):
        if not self._capture[name]:
            return None
        path = self._paths[name]
        data = open(path, "rb").read() if os.path.exists(path) else b""
        return data.decode(errors=self.errors) if self.text else data

    def communicate(self, timeout=None):
        self.wait(timeout)
        outputs = self._read("stdout"), self._read("stderr")
        shutil.rmtree(self._temp, ignore_errors=True)
        return outputs


def run(argv, cwd=None, env=None, capture_output=False, text=False, timeout=None, check=False, errors=None, **_):
    """`subprocess.run([sys.executable, *argv], ...)` through the fork server (or plainly, EXPR3D_TEST_FORK=0)."""
    if not enabled():
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=capture_output, text=text,
                              timeout=timeout, check=check, errors=errors)
    pipe = subprocess.PIPE if capture_output else None
    process = Popen(argv, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=text, errors=errors)
    try:
        stdout, stderr = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    done = subprocess.CompletedProcess([sys.executable, *argv], process.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


def popen(argv, **kwargs):
    """`subprocess.Popen([sys.executable, *argv], ...)` through the fork server (or plainly, EXPR3D_TEST_FORK=0)."""
    if not enabled():
        return subprocess.Popen([sys.executable, *argv], **kwargs)
    return Popen(argv, **kwargs)


if __name__ == "__main__":
    serve()
