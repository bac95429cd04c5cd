# hpclab — the two commands a new user needs:
#   make lab     set up, then JupyterLab on the course with a local 2-engine cluster
#   make test    set up, then the whole test suite (what CI runs)
# `make demo` is the headless variant of `make lab`.

VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST  := $(PY) -m pytest
ENGINES ?= 2
# torch's CPU wheel (about 200 MB) rather than the multi-GB CUDA one; on a GPU node use
# `make setup TORCH=torch` to get the CUDA build.
TORCH   ?= torch==2.13.0
# The Python the venv is made from. As root, .ci/run makes it from the system Python under
# /opt (`make setup VENV=/opt/hpclab/.venv PYTHON=/usr/bin/python3`): the course
# environment of course/deploy/README.md, which the JupyterHub test's students can execute.
PYTHON  ?= python3
# The venv's commands (jupyter, alembic, ipengine ...) first, as if it were activated.
export PATH := $(abspath $(VENV))/bin:$(PATH)

PHONY_TESTS := test test-fast test-quick test-slow
.PHONY: setup system-deps lab lab-instructor demo $(PHONY_TESTS) test-cluster test-notebooks \
        test-browser test-slurm test-soak test-gpu test-unit-a test-unit-b test-unit-c test-unit-d \
        bench gpu-check lint clean vcluster-up vcluster-down test-vcluster

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev,deploy,slides]'
	touch $@

system-deps:
	bash .ci/system-deps

lab: setup
	$(VENV)/bin/hpclab lab --engines $(ENGINES)

# The instructor's lab: exercise sources (solutions, hidden tests) and the nbgrader tools.
lab-instructor: setup
	$(VENV)/bin/hpclab lab --instructor --engines $(ENGINES)

demo: setup
	$(VENV)/bin/hpclab demo --engines $(ENGINES) --out out/demo

# Everything CI checks: all tiers but the soak (GPU tests skip, with the reason, without a GPU).
test: setup system-deps
	$(PYTEST) -m "not soak"

# The soak tier: whole operations repeated many times (50 connects in a row, ~9 min).
test-soak: setup
	$(PYTEST) -m soak

# The quick loop while developing: no engines, browser, Slurm, notebooks or slow tests.

test-fast: setup
	$(PYTEST) -m "not cluster and not slow and not browser and not slurm and not notebooks"

# Everything but the slow tier (notebook runs, autograding, Slurm, faults): about 5 min.
test-quick: setup system-deps
	$(PYTEST) -m "not slow"

test-slow: setup system-deps
	$(PYTEST) -m "slow and not soak"

test-cluster: setup
	$(PYTEST) -m cluster

test-notebooks: setup
	$(PYTEST) -m notebooks

test-browser: setup system-deps
	$(PYTEST) -m browser

test-slurm: setup system-deps
	$(PYTEST) -m slurm

test-gpu: setup
	$(PYTEST) -m gpu

# A Slurm cluster of 2 virtual nodes on this machine (root): network namespaces on a bridge,
# 1 Gbit/s links; `make vcluster-up NODES=4 LINK=10gbit` for others. Its tests: test-vcluster.
NODES ?= 2
LINK  ?= 1gbit
vcluster-up: setup system-deps
	$(VENV)/bin/hpclab vcluster up --nodes $(NODES) --cpus-per-node 2 --link $(LINK)

vcluster-down:
	$(VENV)/bin/hpclab vcluster down

test-vcluster: setup system-deps
	$(PYTEST) -m vcluster

test-unit-a test-unit-b test-unit-c test-unit-d: setup
	$(PYTEST) -m "$(subst -,_,$(subst test-,,$@))"

bench: setup
	$(VENV)/bin/hpclab bench optim
	$(VENV)/bin/hpclab bench comm
	$(VENV)/bin/hpclab bench dp

# On a GPU node (built with `make setup TORCH=torch`): the gpu tier, fused Adam at the
# bandwidth roofline, the memory calculator against CUDA's peak, MFU; at most 8 minutes.
gpu-check: setup
	$(PY) -m hpclab.gpu_check --out out/gpu-check

lint: setup
	$(PY) -m ruff check hpclab tests

clean:
	rm -rf $(VENV) out runs .pytest_cache .hypothesis
