"""How students meet hpclab: JupyterHub spawns their JupyterLab as a Slurm job.

The Hub runs course/deploy/jupyterhub_config.py (ProfilesSpawner over batchspawner's
SlurmSpawner) against the single-node Slurm of the `slurm` fixture, for a throw-away Unix
user. The test asks the Hub's REST API for a "CPU only" server, waits for the Slurm job,
then executes a notebook cell in that server THROUGH the Hub's proxy (kernels REST API +
the kernel's websocket, as JupyterLab does) and checks where it ran. Stopping the server
must cancel the job. The "1 GPU" profile on a GPU-less Slurm must fail with Slurm's reason.

Why the Hub user is root here: in this sandbox the virtual environment's interpreter lives
under /root/.pyenv and /root is mode 0700, so a job of any other user fails with
`slurmstepd: error: execve(): .venv/bin/batchspawner-singleuser: Permission denied` (seen
with a throw-away account and `runuser` as exec_prefix). On a real cluster the course venv
is built from a system Python under /opt (course/deploy/README.md, step 2) and every
student is their own Unix user, with `sudo -E -u {username}` as exec_prefix.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.slurm, pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
USER = "root"   # see the module docstring
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


def user_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", "spawner-jupyterhub", "-o", "%i %T %j"],
                         capture_output=True,
                         text=True, timeout=30, check=False)
    return out.stdout.splitlines()


class Hub:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=30,
                                headers={"Authorization": f"token {self.token}"}, **kw)

    def server(self, name: str = "") -> dict:
        return self.api("GET", f"/users/{USER}").json().get("servers", {}).get(name, {})

    def user_url(self, path: str) -> str:
        return f"{self.url}/user/{USER}{path}"

    def log_tail(self, n: int = 40) -> str:
        """The Hub's log without our polling, and the user's Slurm job logs."""
        lines = [line for line in self.log.read_text(errors="replace").splitlines()
                 if "GET /hub/api/users" not in line]
        jobs = sorted((HUB_DIR / "home").glob("jupyterhub_slurmspawner_*.log"))
        job_logs = "".join(f"\n--- {j}:\n" + j.read_text(errors="replace")[-3000:]
                           for j in jobs)
        return "\n".join(lines[-n:]) + job_logs


@pytest.fixture(scope="module")
def hub_dir():
    """The Hub's state and the "student's" home; the proxy installed if missing."""
    if shutil.which("configurable-http-proxy") is None:
        subprocess.run(["npm", "install", "-g", "--silent", "configurable-http-proxy"],
                       check=True, timeout=600)
    shutil.rmtree(HUB_DIR, ignore_errors=True)
    (HUB_DIR / "home").mkdir(parents=True, mode=0o700)
    try:
        yield HUB_DIR
    finally:
        subprocess.run(["scancel", "--name", "spawner-jupyterhub"], timeout=30, check=False)
        shutil.rmtree(HUB_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(slurm, hub_dir):
    from hpclab.cluster.slurm import reachable_ip
    token = secrets.token_hex(32)
    public, api, proxy_api = free_port(), free_port(), free_port()
    state = HUB_DIR / "state"
    config = HUB_DIR / "jupyterhub_test_config.py"
    config.write_text(f"""
c = get_config()
load_subconfig({str(ROOT / "course" / "deploy" / "jupyterhub_config.py")!r})
c.JupyterHub.authenticator_class = "dummy"        # the test logs in with an API token
c.Authenticator.allowed_users = {{{USER!r}}}
c.JupyterHub.services = [{{"name": "hpclab-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "hpclab-test", "services": ["hpclab-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
c.ConfigurableHTTPProxy.pid_file = {str(HUB_DIR / "proxy.pid")!r}
c.JupyterHub.pid_file = {str(HUB_DIR / "hub.pid")!r}
c.Spawner.start_timeout = 120
# The student is root here (see the module docstring); keep the job logs out of /root.
c.Spawner.args = ["--allow-root"]
c.ProfilesSpawner.profiles = [(d, k, cls, dict(conf, req_homedir={str(HUB_DIR / "home")!r}))
                              for d, k, cls, conf in c.ProfilesSpawner.profiles]
""")
    env = dict(os.environ, HPCLAB_VENV=str(Path(sys.executable).parent.parent),
               HPCLAB_HUB_PUBLIC_URL=f"http://127.0.0.1:{public}",
               HPCLAB_HUB_INTERNAL_IP=reachable_ip(), HPCLAB_HUB_API_PORT=str(api),
               HPCLAB_HUB_PROXY_API_PORT=str(proxy_api), HPCLAB_HUB_STATE_DIR=str(state),
               HPCLAB_HUB_CPU_PARTITION="debug", HPCLAB_HUB_GPU_PARTITION="debug",
               HPCLAB_HUB_ALLOW_ALL="0", HPCLAB_HUB_EXEC_PREFIX="",
               CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
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
        h.api("POST", f"/users/{USER}")
        yield h
    finally:
        h.api("DELETE", f"/users/{USER}/server") if proc.poll() is None else None
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


def execute(hub: Hub, code: str, timeout: float = 90.0) -> dict:
    """Run `code` in a new kernel of the user's server, through the Hub's proxy.

    As JupyterLab does, first a kernel_info handshake (resent every few seconds until the
    kernel answers: a kernel that is still starting can miss the first message), then the
    execute_request; every wait is bounded, and running out of time returns what arrived."""
    import websocket

    headers = {"Authorization": f"token {hub.token}"}
    r = requests.post(hub.user_url("/api/kernels"), headers=headers, json={}, timeout=60)
    assert r.status_code == 201, (r.status_code, r.text[:500])
    kernel = r.json()["id"]
    ws_url = hub.user_url(f"/api/kernels/{kernel}/channels").replace("http://", "ws://")
    ws = websocket.create_connection(ws_url, header=[f"Authorization: token {hub.token}"],
                                     timeout=5)
    session = uuid.uuid4().hex

    def request(msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": USER,
                       "session": session, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}))
        return msg_id

    def next_message() -> dict | None:
        try:
            return json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    out = {"stdout": "", "error": None, "status": None, "kernel_info": False}
    deadline = time.monotonic() + timeout
    try:
        info_id, sent = request("kernel_info_request", {}), time.monotonic()
        while not out["kernel_info"] and time.monotonic() < deadline:
            msg = next_message()
            if msg and msg.get("parent_header", {}).get("msg_id") == info_id \
                    and msg["msg_type"] == "kernel_info_reply":
                out["kernel_info"] = True
            elif time.monotonic() - sent > 5:
                info_id, sent = request("kernel_info_request", {}), time.monotonic()
        msg_id = request("execute_request", {"code": code, "silent": False,
                                             "store_history": False, "user_expressions": {},
                                             "allow_stdin": False})
        while time.monotonic() < deadline:
            msg = next_message()
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
    finally:
        ws.close()
        requests.delete(hub.user_url(f"/api/kernels/{kernel}"), headers=headers, timeout=30)
    return out


CELL = """
import os, stat, glob, socket, torch, hpclab
from jupyter_core.paths import jupyter_runtime_dir
x = torch.arange(4.0)
print("job", os.environ.get("SLURM_JOB_ID"), "user", os.environ.get("USER"),
      "host", socket.gethostname().split(".")[0], "sum", x.sum().item(),
      "hpclab", hpclab.__version__)
kernel_files = glob.glob(os.path.join(jupyter_runtime_dir(), "kernel-*.json"))
print("kernel-file-modes", sorted({oct(stat.S_IMODE(os.stat(f).st_mode)) for f in kernel_files}))
"""


@pytest.mark.timeout(600)   # spawn ≤ 130 s + cell ≤ 90 s + stop ≤ 120 s; 20–100 s seen
def test_notebook_cell_runs_in_a_slurm_job_through_the_hub(hub):
    r = hub.api("POST", f"/users/{USER}/server", json={"profile": "cpu"})
    assert r.status_code in (201, 202), (r.status_code, r.text)
    try:
        wait_for(lambda: hub.server().get("ready"), 130, "the user server")
    except TimeoutError:
        pytest.fail(f"server not ready; queue: {user_jobs()}\n{hub.log_tail()}")
    try:
        jobs = user_jobs()
        assert len(jobs) == 1 and " RUNNING " in jobs[0], jobs
        job_id = jobs[0].split()[0]

        out = execute(hub, CELL)
        assert out["error"] is None and out["status"] == "ok", (out, hub.log_tail())
        words = out["stdout"].split()
        assert words[words.index("job") + 1] == job_id          # the cell ran inside the job
        assert words[words.index("user") + 1] == USER           # as the Hub user
        assert words[words.index("sum") + 1] == "6.0"
        assert "kernel-file-modes ['0o600']" in out["stdout"]   # keys readable by owner only
    finally:   # stopping the server must cancel the job (and leaves the Hub clean)
        r = hub.api("DELETE", f"/users/{USER}/server")
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: not hub.server(), 60, "the server to stop")
        wait_for(lambda: user_jobs() == [], 60, "the Slurm job to leave the queue")


def test_gpu_profile_on_a_cpu_cluster_fails_with_slurms_reason(hub):
    r = hub.api("POST", f"/users/{USER}/server", json={"profile": "gpu1"})
    if r.status_code == 202:   # the spawn failure arrives asynchronously
        wait_for(lambda: not hub.server().get("pending"), 60, "the spawn to finish")
    else:
        assert r.status_code >= 400, (r.status_code, r.text)
    assert not hub.server().get("ready")
    assert user_jobs() == []
    assert "Invalid generic resource" in hub.log_tail(200)
