#!/bin/sh
# Generate Python modules, typed stubs and Envoy's descriptor set from protos/.
# google/api and google/rpc are vendored here so buf, protoc and grpcurl all
# resolve them offline; their Python code comes from googleapis-common-protos.
set -eu
cd "$(dirname "$0")"
PROTOS=$(find reflow -name '*.proto' | sort)
python -m grpc_tools.protoc -I . \
  --python_out=. --grpc_python_out=. \
  --mypy_out=quiet:. --mypy_grpc_out=quiet:. \
  $PROTOS
# One descriptor set with every import, for Envoy's grpc_json_transcoder; the
# google.rpc status protos ride along so error details can be rendered as JSON.
python -m grpc_tools.protoc -I . --include_imports --include_source_info \
  --descriptor_set_out=reflow.binpb $PROTOS \
  google/rpc/status.proto google/rpc/error_details.proto
# protoc writes no __init__.py; mypy and hatch want real packages.
find reflow -type d -exec touch {}/__init__.py \;
touch reflow/py.typed
