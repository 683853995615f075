# Reflow: the commands a person types. `make help` lists them.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
PROTOS := $(shell find protos -name '*.proto')
WEB_SOURCES := $(shell find web/src -type f)
WEB_BUNDLE := services/gateway/static/dist/app.js
# Envoy in docker-compose.yml: the gateway's container address, the descriptor
# set the envoy image carries (services/Dockerfile); tests/test_deployment.py
# renders with these too
DEPLOY_ENVOY_ARGS := --listen 0.0.0.0:8080 --admin 127.0.0.1:9901 \
	--gateway-grpc gateway:50050 --gateway-http gateway:8000 \
	--descriptor /etc/envoy/reflow.binpb --metrics 0.0.0.0:9401

.PHONY: help install protos web-protos web chromium envoy-config deploy-envoy-config dynamodb-table compose-up compose-up-dynamodb test fuzz soak lint typecheck check run bench internal-token token clean

# Show available commands
help:
	@awk '/^# /{doc=substr($$0,3)} /^[a-z-]+:/{if (doc) printf "  %-15s %s\n", substr($$1,1,length($$1)-1), doc; doc=""}' $(MAKEFILE_LIST)

# Create the venv with every extra and dev tool, and the npm tools (buf)
install: $(VENV)/.installed node_modules/.installed

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --python python3
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Generate Python code, type stubs and Envoy's descriptor set from protos/
protos: protos/.generated

protos/.generated: $(VENV)/.installed $(PROTOS) protos/generate.sh
	$(RUN) sh protos/generate.sh
	touch $@

# Generate the browser (gRPC-Web) client code from protos/ into web/gen/
web-protos: web/gen/.generated

web/gen/.generated: node_modules/.installed $(PROTOS) buf.gen.yaml
	rm -rf web/gen
	npx --no-install buf generate
	touch $@

# Bundle the web page (web/src/, CodeMirror, connect-es) into what the gateway serves
web: $(WEB_BUNDLE)

$(WEB_BUNDLE): web/gen/.generated $(WEB_SOURCES) node_modules/.installed
	npx --no-install esbuild app=web/src/main.js frame=web/src/frame.js --bundle \
		--minify --sourcemap --target=es2022 --legal-comments=external --log-level=warning \
		--outdir=$(dir $@)

# Debian's Chromium for the browser tests: installed with apt-get when root, else explained
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium is missing: the browser tests will be skipped. Install it with: sudo apt-get install -y chromium"; \
		fi; }

# Rewrite envoy.yaml from services/stack/envoy.yaml.tmpl (the defaults of `make run`)
envoy-config: install
	$(RUN) python -m services.stack.envoy_config --output envoy.yaml

# Rewrite deploy/envoy.yaml, Envoy's configuration for docker-compose.yml
deploy-envoy-config: install
	$(RUN) python -m services.stack.envoy_config $(DEPLOY_ENVOY_ARGS) --output deploy/envoy.yaml

# Create the notebook service's DynamoDB table from NOTEBOOK_DYNAMODB_* (no-op if it exists)
dynamodb-table: install
	$(RUN) python -m services.notebook.store.dynamodb create-table

# The whole stack in containers (docker-compose.yml; needs REFLOW_INTERNAL_SECRET)
compose-up:
	docker compose up --build

# The same with notebooks in DynamoDB Local (the compose profile "dynamodb")
compose-up-dynamodb:
	docker compose $(if $(wildcard .env),--env-file .env) --env-file deploy/dynamodb.env up --build

# Run the whole test suite (installs what is missing first)
test: install protos web-protos web chromium
	$(RUN) pytest $(PYTEST_ARGS)

# Fuzz every public RPC through Envoy for longer (FUZZ_EXAMPLES per RPC, route and socket)
fuzz: install protos web-protos web
	REFLOW_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),500) $(RUN) pytest tests/stack/test_fuzz.py $(PYTEST_ARGS)

# A bounded load run through Envoy: SOAK_CLIENTS users for SOAK_MINUTES (a measurement, not a test)
soak: install protos
	$(RUN) python -m bench.soak --clients $(or $(SOAK_CLIENTS),10) --minutes $(or $(SOAK_MINUTES),1)

# Lint: ruff, ruff format, buf lint
lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	npx --no-install buf lint

# Type-check and verify service boundaries
typecheck: install protos
	$(RUN) mypy
	$(RUN) lint-imports

# Everything CI runs
check: lint typecheck test

# Start the whole stack locally (services + Envoy on :8080); Ctrl-C stops it
run: install protos web
	$(RUN) python -m services.stack

# Measure DESIGN §9 through Envoy beside Jupyter (BENCH_ARGS=--quick|--gateway|--direct|--skip-jupyter|--with-marimo)
bench: install protos
	$(RUN) python -m bench $(BENCH_ARGS)

# Print a dev token for USER (`make -s token USER=alice`), accepted by `make run`'s gateway
token: install
	@GATEWAY_DATA_DIR="$${GATEWAY_DATA_DIR:-$${REFLOW_DATA_DIR:-data}/gateway}" \
		$(RUN) python -m services.gateway.devtoken $(or $(USER_NAME),$(USER))

# Print an internal token for USER (secret: REFLOW_INTERNAL_SECRET, else make run's)
internal-token: install
	@REFLOW_INTERNAL_SECRET="$${REFLOW_INTERNAL_SECRET:-$$(cat "$${REFLOW_DATA_DIR:-data}/internal-secret" 2>/dev/null)}" \
		$(RUN) python -m services.shared.auth mint $(or $(USER_NAME),$(USER))

clean:
	rm -rf $(VENV) .tools node_modules protos/.generated web/gen services/gateway/static/dist
