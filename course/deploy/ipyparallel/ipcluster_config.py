"""ipyparallel cluster settings for the course: engines through Slurm by default.

Used by `ipcluster start` and `ipyparallel.Cluster()` directly; hpclab.connect() passes
its own launcher settings on top (engines="slurm" | "local" | "mpi").

Site values come from the environment (set them in the JupyterHub profile or /etc/profile.d):
    HPCLAB_CONTROLLER_IP   the login/compute network address the controller listens on
    HPCLAB_PARTITION       default partition for engines
"""

import os

c = get_config()  # noqa: F821 (ipyparallel provides get_config when it loads this file)

c.Cluster.engine_launcher_class = "slurm"
# Listen on the cluster-internal interface only, never "*": the engines on compute nodes
# need to reach the controller, nobody else does.
if os.environ.get("HPCLAB_CONTROLLER_IP"):
    c.Cluster.controller_ip = os.environ["HPCLAB_CONTROLLER_IP"]
if os.environ.get("HPCLAB_PARTITION"):
    c.SlurmEngineSetLauncher.queue = os.environ["HPCLAB_PARTITION"]
c.SlurmEngineSetLauncher.timelimit = "01:00:00"
# Batch scripts in the profile (private), not in the notebook's working directory.
_log = os.path.expanduser(os.path.join(os.environ.get("IPYTHONDIR", "~/.ipython"),
                                       "profile_default", "log"))
os.makedirs(_log, mode=0o700, exist_ok=True)
c.SlurmEngineSetLauncher.batch_file_name = os.path.join(_log, "slurm_engine.sbatch")
