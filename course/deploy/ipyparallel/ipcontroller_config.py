"""ipyparallel controller settings for the course (profile_default of every student).

Install: copy this file and ipcluster_config.py into ~/.ipython/profile_default/ (the
admin guide, course/deploy/README.md step 5, does it for every account through /etc/skel
or the JupyterHub job prologue). hpclab.connect() reads this profile too.
"""

c = get_config()  # noqa: F821 (ipyparallel provides get_config when it loads this file)

# Encrypt and authenticate all controller <-> engine <-> client traffic (CurveZMQ).
# Without it the messages cross the cluster network in clear, signed only with the
# key from the connection file; with it, a process that can reach the controller's
# ports but lacks the keys (in the 0600 connection files) cannot even connect.
c.IPController.enable_curve = True
