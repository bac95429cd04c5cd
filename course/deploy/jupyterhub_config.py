"""JupyterHub for the course: every student's JupyterLab runs as a Slurm job.

Copy to /etc/jupyterhub/jupyterhub_config.py (or point `jupyterhub -f` here) and set the
site values below through the environment (or edit the defaults). The step-by-step guide is
course/deploy/README.md.

    HPCLAB_VENV                    the course's virtual environment (hpclab, jupyterhub,
                                   batchspawner, wrapspawner installed), readable by students
    HPCLAB_HUB_PUBLIC_URL          where students connect (put TLS in front, see README)
    HPCLAB_HUB_INTERNAL_IP         the login node's address on the cluster network: the
                                   user servers on compute nodes call the Hub API there
    HPCLAB_HUB_CPU_PARTITION       partition for the CPU-only profile
    HPCLAB_HUB_GPU_PARTITION       partition for the GPU profiles
    HPCLAB_HUB_GPUS_PER_NODE       GPUs in one node of that partition (the "full node" profile)
    HPCLAB_HUB_ACCOUNT             Slurm account to charge (empty: each user's default)
    HPCLAB_HUB_STATE_DIR           database, cookie secret (created mode 0700)

Students choose a profile on the spawn page: CPU only, 1 GPU, or a full node.
"""

import os

# Importing batchspawner registers the Hub API route (/hub/api/batchspawner) through which a
# user server on a compute node reports its port. With ProfilesSpawner the spawner class is
# only imported at the first spawn, after the Hub has started, so import it here.
import batchspawner  # noqa: F401

c = get_config()  # noqa: F821 (JupyterHub provides get_config when it loads this file)

env = os.environ.get
VENV = env("HPCLAB_VENV", "/opt/hpclab/.venv")
CPU_PARTITION = env("HPCLAB_HUB_CPU_PARTITION", "cpu")
GPU_PARTITION = env("HPCLAB_HUB_GPU_PARTITION", "gpu")
GPUS_PER_NODE = int(env("HPCLAB_HUB_GPUS_PER_NODE", "4"))
ACCOUNT = env("HPCLAB_HUB_ACCOUNT", "")
STATE = env("HPCLAB_HUB_STATE_DIR", "/srv/jupyterhub")
os.makedirs(STATE, mode=0o700, exist_ok=True)

# --- where the Hub listens --------------------------------------------------------------
# Public side: the proxy, on localhost behind a TLS reverse proxy (nginx/caddy) by default.
c.JupyterHub.bind_url = env("HPCLAB_HUB_PUBLIC_URL", "http://127.0.0.1:8000")
# Internal side: the Hub API, on the cluster network only (compute nodes report back here),
# never on a public interface.
internal_ip = env("HPCLAB_HUB_INTERNAL_IP", "127.0.0.1")
c.JupyterHub.hub_bind_url = f"http://{internal_ip}:{env('HPCLAB_HUB_API_PORT', '8081')}"
c.JupyterHub.hub_connect_ip = internal_ip
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('HPCLAB_HUB_PROXY_API_PORT', '8001')}"

c.JupyterHub.db_url = f"sqlite:///{STATE}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE}/jupyterhub_cookie_secret"   # written 0600

# --- authentication -----------------------------------------------------------------------
# PAM (the cluster's own accounts) by default; most sites swap in their SSO (OAuthenticator).
c.JupyterHub.authenticator_class = env("HPCLAB_HUB_AUTHENTICATOR", "pam")
c.Authenticator.allow_all = env("HPCLAB_HUB_ALLOW_ALL", "1") == "1"   # any cluster account

# --- spawning: a profile list over batchspawner's SlurmSpawner ----------------------------
c.JupyterHub.spawner_class = "wrapspawner.ProfilesSpawner"
c.Spawner.cmd = [f"{VENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 120           # a compute node's first Python import can be slow
c.Spawner.start_timeout = 600          # includes time in the queue
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "SLURM_CONF"]
c.Spawner.environment = {"VIRTUAL_ENV": VENV, "HPCLAB_ENGINES": "2"}
c.SlurmSpawner.batchspawner_singleuser_cmd = f"{VENV}/bin/batchspawner-singleuser"
c.SlurmSpawner.exec_prefix = env("HPCLAB_HUB_EXEC_PREFIX", "sudo -E -u {username}")
# umask 077: connection files, kernel keys and logs the job writes are the student's alone.
c.SlurmSpawner.req_prologue = f"umask 077; export PATH={VENV}/bin:$PATH"
c.SlurmSpawner.req_account = ACCOUNT
c.SlurmSpawner.req_srun = "srun"

_common = {"req_account": ACCOUNT}
c.ProfilesSpawner.profiles = [
    ("CPU only: 2 cores, 4 GB, 2 hours", "cpu", "batchspawner.SlurmSpawner",
     dict(_common, req_partition=CPU_PARTITION, req_nprocs="2", req_memory="4G",
          req_runtime="2:00:00")),
    ("1 GPU: 8 cores, 32 GB, 4 hours", "gpu1", "batchspawner.SlurmSpawner",
     dict(_common, req_partition=GPU_PARTITION, req_gres="gpu:1", req_nprocs="8",
          req_memory="32G", req_runtime="4:00:00")),
    (f"A full node: {GPUS_PER_NODE} GPUs, exclusive, 4 hours", "node",
     "batchspawner.SlurmSpawner",
     dict(_common, req_partition=GPU_PARTITION, req_gres=f"gpu:{GPUS_PER_NODE}",
          req_options="--exclusive", req_memory="0", req_runtime="4:00:00")),
]

# Idle servers give their nodes back (jupyterhub-idle-culler, if installed).
try:
    import jupyterhub_idle_culler  # noqa: F401
    c.JupyterHub.services = [{"name": "idle-culler",
                              "command": [f"{VENV}/bin/python", "-m", "jupyterhub_idle_culler",
                                          "--timeout=3600"]}]
    c.JupyterHub.load_roles = [{"name": "idle-culler", "services": ["idle-culler"],
                                "scopes": ["list:users", "read:users:activity",
                                           "read:servers", "delete:servers"]}]
except ImportError:
    pass
