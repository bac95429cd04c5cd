"""How students meet hpclab: JupyterHub spawns their JupyterLab as a Slurm job, as them.

The Hub runs course/deploy/jupyterhub_config.py (ProfilesSpawner over batchspawner's
SlurmSpawner, `sudo -E -u {username}` as exec_prefix) against the single-node Slurm of the
`slurm` fixture. Its students are two real Unix users made for the test (`useradd`, homes
mode 0700, removed again at the end), and their servers run the course environment as
admins build it (course/deploy/README.md, step 2): a virtual environment made from the
system Python under /opt, $HPCLAB_VENV (default /opt/hpclab/.venv; `.ci/run` builds the
test environment itself there, so one install serves the tests and the students).

- A notebook cell runs in a student's Slurm job THROUGH the Hub's proxy (kernels REST API +
  the kernel's websocket, as JupyterLab does), as that student; stopping the server cancels
  the job. The "1 GPU" profile on a GPU-less Slurm fails with Slurm's reason.
- Two students at once: each one's server job, engine job (hpclab.connect(engines="slurm")
  from the notebook) and engine processes belong to that student's uid, and neither can
  open the other's notebook or ipyparallel connection files (opened as the other uid with
  `runuser`: Permission denied, while the owner reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
import websocket

pytestmark = [pytest.mark.slurm, pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = ("hpclab-ada", "hpclab-bob")     # made by the `students` fixture, then removed
USER = STUDENTS[0]
COURSE_VENV = Path(os.environ.get("HPCLAB_VENV", "/opt/hpclab/.venv"))
HUB_DIR = Path("/tmp/hpclab-hubtest")


def free_port() -> int:
    from hpclab.cluster.net import free_port as fp
    return fp("0.0.0.0")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def run_as(user: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`cmd` with `user`'s uid and groups: what that student could do from a shell."""
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def jobs(user: str | None = None) -> list[str]:
    """'<id> <state> <user> <name>' of the Slurm jobs of `user` (None: the servers' jobs)."""
    who = ["-u", user] if user else ["-n", "spawner-jupyterhub"]
    out = subprocess.run(["squeue", "-h", *who, "-o", "%i %T %u %j"], capture_output=True,
                         text=True, timeout=30, check=False)
    return out.stdout.splitlines()


def user_jobs(user: str | None = None) -> list[str]:
    """The Hub's server jobs (of `user`)."""
    return [j for j in jobs(user) if j.endswith(" spawner-jupyterhub")]


def remove_student(name: str) -> None:
    """Cancel the student's jobs, end their processes, delete the account and its home."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    subprocess.run(["scancel", "-u", name], timeout=30, check=False)
    try:
        wait_for(lambda: not jobs(name), 60, f"{name}'s jobs to leave the queue")
    except TimeoutError:
        pass
    procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def made_students(names: tuple[str, ...] = STUDENTS):
    """Unix accounts with private homes, made afresh (an earlier run's are removed first)
    and removed at the end with their jobs and processes."""
    for name in names:
        remove_student(name)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name],
                       check=True, timeout=30)
        Path(pwd.getpwnam(name).pw_dir).chmod(0o700)
    try:
        yield names
    finally:
        for name in names:
            remove_student(name)


@pytest.fixture(scope="module")
def students(slurm):
    with made_students() as names:
        yield names


def check_course_venv(student: str, venv: Path = COURSE_VENV) -> Path:
    """The course environment, checked the way a student meets it: run as a student."""
    probe = run_as(student, str(venv / "bin" / "python"), "-c",
                   "import hpclab, torch, batchspawner, ipyparallel")
    if probe.returncode != 0:
        pytest.fail(f"student {student} cannot use the course environment {venv}: "
                    f"{(probe.stdout + probe.stderr).strip()[-600:]}\nBuild it from the system "
                    "Python as course/deploy/README.md (step 2) says; in this checkout, as "
                    "root: `make setup VENV=/opt/hpclab/.venv PYTHON=/usr/bin/python3` (what "
                    ".ci/run does), or point HPCLAB_VENV at one")
    return venv


class Hub:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=30,
                                headers={"Authorization": f"token {self.token}"}, **kw)

    def server(self, user: str = USER, name: str = "") -> dict:
        return self.api("GET", f"/users/{user}").json().get("servers", {}).get(name, {})

    def user_url(self, path: str, user: str = USER) -> str:
        return f"{self.url}/user/{user}{path}"

    def log_tail(self, n: int = 40) -> str:
        """The Hub's log without our polling, and the students' Slurm job logs."""
        lines = [line for line in self.log.read_text(errors="replace").splitlines()
                 if "GET /hub/api/users" not in line]
        logs = sorted(p for s in STUDENTS if _exists(s)
                      for p in Path(pwd.getpwnam(s).pw_dir).glob("jupyterhub_slurmspawner_*"))
        job_logs = "".join(f"\n--- {j}:\n" + j.read_text(errors="replace")[-3000:]
                           for j in logs)
        return "\n".join(lines[-n:]) + job_logs


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def running_hub(students: tuple[str, ...], internal_ip: str, partition: str = "debug",
                extra_config: str = ""):
    """The course's JupyterHub (course/deploy/jupyterhub_config.py) with `students` as its
    users, the Hub API on `internal_ip`, its servers in `partition`; the proxy installed if
    missing. `extra_config` is appended to the test's config file."""
    venv = check_course_venv(students[0])
    if shutil.which("configurable-http-proxy") is None:
        subprocess.run(["npm", "install", "-g", "--silent", "configurable-http-proxy"],
                       check=True, timeout=600)
    shutil.rmtree(HUB_DIR, ignore_errors=True)
    HUB_DIR.mkdir(parents=True, mode=0o700)
    token = secrets.token_hex(32)
    public, api, proxy_api = free_port(), free_port(), free_port()
    config = HUB_DIR / "jupyterhub_test_config.py"
    config.write_text(f"""
c = get_config()
load_subconfig({str(ROOT / "course" / "deploy" / "jupyterhub_config.py")!r})
c.JupyterHub.authenticator_class = "dummy"        # the test logs in with an API token
c.Authenticator.allowed_users = {set(students)!r}
c.JupyterHub.services = [{{"name": "hpclab-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "hpclab-test", "services": ["hpclab-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
c.ConfigurableHTTPProxy.pid_file = {str(HUB_DIR / "proxy.pid")!r}
c.JupyterHub.pid_file = {str(HUB_DIR / "hub.pid")!r}
c.Spawner.start_timeout = 120
# Students share the test's small nodes: a core each, the node's cores shared.
c.ProfilesSpawner.profiles = [
    (d, k, cls, dict(conf, req_nprocs="1", req_options="--oversubscribe") if k == "cpu" else conf)
    for d, k, cls, conf in c.ProfilesSpawner.profiles]
""" + extra_config)
    env = dict(os.environ, HPCLAB_VENV=str(venv),
               HPCLAB_HUB_PUBLIC_URL=f"http://127.0.0.1:{public}",
               HPCLAB_HUB_INTERNAL_IP=internal_ip, HPCLAB_HUB_API_PORT=str(api),
               HPCLAB_HUB_PROXY_API_PORT=str(proxy_api),
               HPCLAB_HUB_STATE_DIR=str(HUB_DIR / "state"),
               HPCLAB_HUB_CPU_PARTITION=partition, HPCLAB_HUB_GPU_PARTITION=partition,
               HPCLAB_HUB_ALLOW_ALL="0", CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
    env.pop("HPCLAB_HUB_EXEC_PREFIX", None)     # the config's own: sudo -E -u {username}
    log = HUB_DIR / "jupyterhub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f",
                                 str(config)], cwd=HUB_DIR, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    h = Hub(f"http://127.0.0.1:{public}", token, proc, log)

    def up():
        assert proc.poll() is None, f"jupyterhub exited:\n{h.log_tail()}"
        try:
            return h.api("GET", "/").ok
        except requests.ConnectionError:
            return False
    try:
        wait_for(up, 90, "JupyterHub answering")
        for user in students:
            h.api("POST", f"/users/{user}")
        yield h
    finally:
        if proc.poll() is None:
            for user in students:
                h.api("DELETE", f"/users/{user}/server")
        proc.send_signal(signal.SIGTERM)     # the Hub stops the proxy it started
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        pidfile = HUB_DIR / "proxy.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        subprocess.run(["scancel", "--name", "spawner-jupyterhub"], timeout=30, check=False)
        shutil.rmtree(HUB_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(slurm, students):
    from hpclab.cluster.slurm import reachable_ip
    with running_hub(students, reachable_ip()) as h:
        yield h


class Kernel:
    """A new kernel in `user`'s server, driven through the Hub's proxy as JupyterLab does.

    First a kernel_info handshake (resent every few seconds until the kernel answers: a
    kernel that is still starting can miss the first message); then `run(code)` sends an
    execute_request. Every wait is bounded; running out of time returns what arrived. A
    websocket left idle (the test checking files between two cells) does not answer the
    server's pings and gets closed: `run` reconnects after IDLE_S, and a closed socket is
    reopened, as JupyterLab does."""

    IDLE_S = 15.0

    def __init__(self, hub: Hub, user: str = USER, timeout: float = 60.0):
        self.hub, self.user = hub, user
        self.headers = {"Authorization": f"token {hub.token}"}
        r = requests.post(hub.user_url("/api/kernels", user), headers=self.headers, json={},
                          timeout=60)
        assert r.status_code == 201, (r.status_code, r.text[:500])
        self.id = r.json()["id"]
        self._connect()
        self.session = uuid.uuid4().hex
        self.ready = False
        deadline = time.monotonic() + timeout
        info_id, sent = self._request("kernel_info_request", {}), time.monotonic()
        while not self.ready and time.monotonic() < deadline:
            msg = self._next()
            if msg and msg.get("parent_header", {}).get("msg_id") == info_id \
                    and msg["msg_type"] == "kernel_info_reply":
                self.ready = True
            elif time.monotonic() - sent > 5:
                info_id, sent = self._request("kernel_info_request", {}), time.monotonic()

    def _connect(self) -> None:
        ws_url = self.hub.user_url(f"/api/kernels/{self.id}/channels", self.user)
        self.ws = websocket.create_connection(ws_url.replace("http://", "ws://"), timeout=5,
                                              header=[f"Authorization: token {self.hub.token}"])
        self._last_io = time.monotonic()

    def _request(self, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": self.user,
                       "session": self.session, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}))
        return msg_id

    def _next(self) -> dict | None:
        try:
            text = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except websocket.WebSocketConnectionClosedException:
            text = ""
        if not text:                # the server closed the socket: open another
            self._connect()
            return None
        self._last_io = time.monotonic()
        return json.loads(text)

    def run(self, code: str, timeout: float = 90.0) -> dict:
        out = {"stdout": "", "error": None, "status": None, "kernel_info": self.ready}
        if time.monotonic() - self._last_io > self.IDLE_S:
            self.ws.close()
            self._connect()
        msg_id = self._request("execute_request", {"code": code, "silent": False,
                                                   "store_history": False,
                                                   "user_expressions": {},
                                                   "allow_stdin": False})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next()
            if msg is None or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out["stdout"] += content["text"]
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                out["status"] = content["status"]
            elif kind == "status" and content["execution_state"] == "idle" and out["status"]:
                break
        return out

    def close(self) -> None:
        self.ws.close()
        requests.delete(self.hub.user_url(f"/api/kernels/{self.id}", self.user),
                        headers=self.headers, timeout=30)


def execute(hub: Hub, code: str, timeout: float = 90.0, user: str = USER) -> dict:
    """Run `code` in a new kernel of `user`'s server, through the Hub's proxy."""
    kernel = Kernel(hub, user, timeout)
    try:
        return kernel.run(code, timeout)
    finally:
        kernel.close()


def spawn(hub: Hub, users: tuple[str, ...], timeout: float = 130) -> None:
    """Ask for every user's "CPU only" server at once; wait until all are ready."""
    for user in users:
        r = hub.api("POST", f"/users/{user}/server", json={"profile": "cpu"})
        assert r.status_code in (201, 202), (user, r.status_code, r.text)
    try:
        wait_for(lambda: all(hub.server(u).get("ready") for u in users), timeout,
                 f"the servers of {', '.join(users)}")
    except TimeoutError:
        pytest.fail(f"servers not ready; queue: {jobs()}\n{hub.log_tail()}")


def stop(hub: Hub, users: tuple[str, ...]) -> None:
    """Stopping a server must cancel its job (and leaves the Hub clean)."""
    for user in users:
        r = hub.api("DELETE", f"/users/{user}/server")
        assert r.status_code in (202, 204), r.text
    wait_for(lambda: not any(hub.server(u) for u in users), 60, "the servers to stop")
    wait_for(lambda: user_jobs() == [], 60, "the Slurm jobs to leave the queue")


CELL = """
import os, stat, glob, socket, torch, hpclab
from jupyter_core.paths import jupyter_runtime_dir
x = torch.arange(4.0)
print("job", os.environ.get("SLURM_JOB_ID"), "user", os.environ.get("USER"),
      "uid", os.getuid(), "host", socket.gethostname().split(".")[0], "sum", x.sum().item(),
      "hpclab", hpclab.__version__)
kernel_files = glob.glob(os.path.join(jupyter_runtime_dir(), "kernel-*.json"))
print("kernel-file-modes", sorted({oct(stat.S_IMODE(os.stat(f).st_mode)) for f in kernel_files}))
"""


@pytest.mark.timeout(600)   # spawn ≤ 130 s + cell ≤ 90 s + stop ≤ 120 s; 20–100 s seen
def test_notebook_cell_runs_in_a_slurm_job_through_the_hub(hub):
    spawn(hub, (USER,))
    try:
        server_jobs = user_jobs()
        assert len(server_jobs) == 1 and " RUNNING " in server_jobs[0], server_jobs
        job_id = server_jobs[0].split()[0]

        out = execute(hub, CELL)
        assert out["error"] is None and out["status"] == "ok", (out, hub.log_tail())
        words = out["stdout"].split()
        assert words[words.index("job") + 1] == job_id          # the cell ran inside the job
        assert words[words.index("user") + 1] == USER           # as the student
        assert int(words[words.index("uid") + 1]) == pwd.getpwnam(USER).pw_uid
        assert words[words.index("sum") + 1] == "6.0"
        assert "kernel-file-modes ['0o600']" in out["stdout"]   # keys readable by owner only
    finally:
        stop(hub, (USER,))


def test_gpu_profile_on_a_cpu_cluster_fails_with_slurms_reason(hub):
    r = hub.api("POST", f"/users/{USER}/server", json={"profile": "gpu1"})
    if r.status_code == 202:   # the spawn failure arrives asynchronously
        wait_for(lambda: not hub.server().get("pending"), 60, "the spawn to finish")
    else:
        assert r.status_code >= 400, (r.status_code, r.text)
    assert not hub.server().get("ready")
    assert user_jobs() == []
    assert "Invalid generic resource" in hub.log_tail(200)


# A student's notebook session: a notebook saved, engines as a Slurm job of their own.
ENGINES_CELL = """
import glob, json, os, hpclab
cluster = hpclab.connect(n=1, engines="slurm", time="10", extra=["--oversubscribe"],
                         timeout=90)
print("FACTS", json.dumps({"uid": os.getuid(), "kernel": os.getpid(), "engines": cluster.pids,
      "files": sorted(glob.glob(os.path.expanduser("~/.ipython/profile_*/security/*.json")))}))
"""
NOTEBOOK = {"type": "notebook", "content": {
    "cells": [{"cell_type": "code", "source": "answer = 42", "metadata": {}, "outputs": [],
               "execution_count": None}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}


def notebook_session(hub: Hub, user: str) -> tuple[Kernel, dict]:
    r = requests.put(hub.user_url("/api/contents/private.ipynb", user), json=NOTEBOOK,
                     headers={"Authorization": f"token {hub.token}"}, timeout=30)
    assert r.status_code in (200, 201), (user, r.status_code, r.text[:300])
    kernel = Kernel(hub, user)
    out = kernel.run(ENGINES_CELL, timeout=120)
    assert out["error"] is None and out["status"] == "ok", (user, out, hub.log_tail())
    line = next(w for w in out["stdout"].splitlines() if w.startswith("FACTS "))
    facts = json.loads(line.split(" ", 1)[1])
    facts["notebook"] = str(Path(pwd.getpwnam(user).pw_dir) / "private.ipynb")
    return kernel, facts


@pytest.mark.timeout(600)   # spawn ≤ 130 s + cells ≤ 120 s + stop ≤ 120 s
def test_two_students_run_as_themselves_and_cannot_read_each_other(hub):
    spawn(hub, STUDENTS)
    kernels = []
    try:
        with ThreadPoolExecutor(len(STUDENTS)) as pool:
            sessions = list(pool.map(lambda u: notebook_session(hub, u), STUDENTS))
        kernels = [k for k, _ in sessions]
        facts = dict(zip(STUDENTS, (f for _, f in sessions)))
        for user, mine in facts.items():
            uid = pwd.getpwnam(user).pw_uid
            # the server's job and the engines' job are this student's jobs
            names = sorted(j.split()[3].split("-")[0] for j in jobs(user))
            assert names == ["hpclab", "spawner"], jobs(user)
            assert {j.split()[2] for j in jobs(user)} == {user}
            # and so are the processes: the kernel and every engine
            assert mine["uid"] == uid
            for pid in [mine["kernel"], *mine["engines"]]:
                assert psutil.Process(pid).uids().real == uid, (user, pid)
            connection = [f for f in mine["files"] if "ipcontroller-" in f]
            assert any(f.endswith("-client.json") for f in connection), mine["files"]
            assert any(f.endswith("-engine.json") for f in connection), mine["files"]
            for path in [mine["notebook"], *connection]:
                mode = os.stat(path).st_mode
                assert not mode & 0o077, f"{path}: {stat.filemode(mode)}"
                assert run_as(user, "cat", path).returncode == 0     # the owner reads it
                for other in STUDENTS:
                    if other != user:
                        denied = run_as(other, "cat", path)
                        assert denied.returncode != 0 and "Permission denied" in denied.stderr, \
                            (other, path, denied.stdout[:200], denied.stderr)
        for kernel in kernels:
            out = kernel.run("cluster.close()", timeout=60)
            assert out["status"] == "ok", out
        for user in STUDENTS:
            wait_for(lambda u=user: user_jobs(u) == jobs(u), 60, f"{user}'s engine job to end")
    finally:
        for kernel in kernels:
            kernel.close()
        stop(hub, STUDENTS)
