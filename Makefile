# Reflow: the commands a person types. `make help` lists them.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
PROTOS := $(shell find protos -name '*.proto')

.PHONY: help install protos web-protos envoy-config test lint typecheck check run bench internal-token token clean

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
	npm install --no-audit --no-fund --loglevel=error
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

# Rewrite envoy.yaml from services/stack/envoy.yaml.tmpl (the defaults of `make run`)
envoy-config: install
	$(RUN) python -m services.stack.envoy_config --output envoy.yaml

# Run the whole test suite (installs what is missing first)
test: install protos web-protos
	$(RUN) pytest $(PYTEST_ARGS)

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
run: install protos
	$(RUN) python -m services.stack

# Print a dev token for USER (`make -s token USER=alice`), accepted by `make run`'s gateway
token: install
	@GATEWAY_DATA_DIR="$${GATEWAY_DATA_DIR:-$${REFLOW_DATA_DIR:-data}/gateway}" \
		$(RUN) python -m services.gateway.devtoken $(or $(USER_NAME),$(USER))

# Print an internal token for USER (to call a service directly with grpcurl)
internal-token: install
	@$(RUN) python -m services.shared.auth mint $(or $(USER_NAME),$(USER))

clean:
	rm -rf $(VENV) .tools node_modules protos/.generated web/gen
