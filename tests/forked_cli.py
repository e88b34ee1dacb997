"""A ``symprop`` command that starts in milliseconds, for the pages' code blocks (tests/test_docs.py).

A page's shell blocks run dozens of ``symprop ...`` commands; each real one spends about a
second of processor time importing SymPy, numba and symprop before its own work. Here one
server process imports them once, and every command the blocks run is a fork of it: the
``symprop`` found first on the blocks' PATH is a small client that hands the server its
arguments, folder, environment and standard streams, and exits with the command's status.
The fork runs ``symprop.cli.main`` as the installed script does, in the client's folder and
environment, writing to the client's own streams, so pipes, redirections and exit statuses in
the blocks behave as with the real command. The pages' python blocks run the same way, as
``python -c`` would run them. (The real script and ``python -m symprop`` are run
as separate processes by tests/test_cli.py and tests/test_core_install.py.)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

# The client: standard library only, no site-packages (-S), so it starts in a few milliseconds.
CLIENT = '''#!{python} -S
import json, os, socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect({socket_path!r})
request = json.dumps({{"program": {program!r}, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}})
request = request.encode()
socket.send_fds(connection, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
status = connection.recv(4)
if len(status) < 4:
    sys.stderr.write("symprop (forked for the docs test): the command died without an exit status\\n")
    sys.exit(1)
sys.exit(int.from_bytes(status, "big", signed=True))
'''

# What the server imports before it forks: the commands the pages run and the libraries they
# load lazily (SymPy, numba, matplotlib, networkx, scikit-learn's datasets).
PRELOAD = ("symprop.cli.commands.check", "symprop.cli.commands.derive", "symprop.cli.commands.draw",
           "symprop.cli.commands.example", "symprop.cli.commands.generate", "symprop.cli.commands.train",
           "symprop.cli.commands.variant", "symprop.symbolic.examples", "symprop.symbolic.checker",
           "symprop.symbolic.html_page", "symprop.symbolic.graph_transcript", "symprop.symbolic.grading",
           "symprop.codegen.network", "symprop.training.train", "symprop.training.plots", "symprop.draw",
           "numba", "scipy.linalg.cython_blas", "matplotlib.pyplot", "networkx", "sklearn.datasets",
           "latex2mathml.converter", "tqdm")

# The server: imports what the commands use, then forks once per request.
SERVER = f"PRELOAD = {PRELOAD!r}\n" + '''
import json, os, socket, sys, traceback, types
sys.path[0] = os.path.dirname(sys.executable)  # as for the installed script: its own folder
import importlib
import symprop.cli
for name in PRELOAD:
    try:
        importlib.import_module(name)
    except ImportError:  # an extra not installed: the command that needs it says so itself
        pass

def receive(connection):
    header, fds, _, _ = socket.recv_fds(connection, 8, 3)
    size, data = int.from_bytes(header, "big"), b""
    while len(data) < size:
        data += connection.recv(size - len(data))
    return json.loads(data), fds

def run_command(connection, request, fds):
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        if request["program"]:  # python -c PROGRAM
            sys.argv, sys.path[0] = ["-c"], ""  # as python -c: the folder it runs in comes first
            sys.modules["__main__"] = main = types.ModuleType("__main__")
            exec(compile(request["argv"][0], "<string>", "exec"), main.__dict__)
            status = 0
        else:
            sys.argv = ["symprop", *request["argv"]]
            status = symprop.cli.main(request["argv"])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            traceback.print_exc()
            status = status or 120  # as Python does when flushing at exit fails
    connection.sendall(int(status or 0).to_bytes(4, "big", signed=True))
    os._exit(0)

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(16)
print("ready", flush=True)
while True:
    connection, _ = listener.accept()
    request, fds = receive(connection)
    if request.get("stop"):  # the commands' processor time is counted in the server's once it waits
        while True:
            try:
                os.wait()
            except ChildProcessError:
                sys.exit(0)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        listener.close()
        run_command(connection, request, fds)
    for fd in fds:
        os.close(fd)
    connection.close()
    while True:  # reap the commands that ended
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
'''


@contextmanager
def forked_symprop(env: dict):
    """A folder holding the clients (put it first on PATH) while their server runs with env:
    ``symprop ARGS`` as the command, ``python-program CODE`` as ``python -c CODE``."""
    with tempfile.TemporaryDirectory(prefix="symprop-cli-") as folder:
        socket_path = os.path.join(folder, "server.sock")
        server = subprocess.Popen([sys.executable, "-c", SERVER, socket_path], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        try:
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the forked symprop server did not start (exit status {server.wait()})")
            for name, program in (("symprop", False), ("python-program", True)):
                client = Path(folder) / name
                client.write_text(CLIENT.format(python=sys.executable, socket_path=socket_path, program=program))
                client.chmod(0o755)
            yield folder
        finally:
            _stop(server, socket_path)


def _stop(server: subprocess.Popen, socket_path: str) -> None:
    """Ask the server to wait for its commands and end; kill it if it cannot."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(socket_path)
            request = json.dumps({"stop": True}).encode()
            connection.sendall(len(request).to_bytes(8, "big") + request)
        server.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        server.kill()
        server.wait()
    server.stdout.close()


if __name__ == "__main__":  # try it: python tests/forked_cli.py derive sigmoid
    with forked_symprop(dict(os.environ)) as bin_folder:
        sys.exit(subprocess.run([os.path.join(bin_folder, "symprop"), *sys.argv[1:]]).returncode)
