/**
 * The public services, called from the browser with gRPC-Web through Envoy
 * (the same origin that serves the page), with the connect-es code that
 * `make web-protos` generates from protos/.
 *
 * The rest of the page works with the canonical proto JSON of messages (the
 * shape the REST API and the WebSocket bridge use: enums as names, int64 as
 * strings, oneofs as their field): requests are built from JSON and responses
 * turned back into it here, so the other modules never see a generated class.
 */

import { fromJson, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { AssistantService } from "../gen/reflow/assistant/v1/assistant_pb.js";
import { ExecutionService } from "../gen/reflow/execution/v1/execution_pb.js";
import { GatewayService } from "../gen/reflow/gateway/v1/gateway_pb.js";
import { NotebookService } from "../gen/reflow/notebook/v1/notebook_pb.js";

export { Code };

const TOKEN_KEY = "reflow.token";
const UNARY_TIMEOUT_MS = 30_000;

const SERVICES = {
  assistant: AssistantService,
  execution: ExecutionService,
  gateway: GatewayService,
  notebook: NotebookService,
};

const transport = createGrpcWebTransport({ baseUrl: location.origin });
const clients = Object.fromEntries(
  Object.entries(SERVICES).map(([name, service]) => [name, createClient(service, transport)]),
);

/** The signed-in user's token (kept in localStorage) and a hook for a refused one. */
export const auth = {
  token: localStorage.getItem(TOKEN_KEY),
  onRefused: (_message) => {},
};

export function storeToken(token) {
  auth.token = token || null;
  if (auth.token) localStorage.setItem(TOKEN_KEY, auth.token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An RPC's failure: the gRPC code, the server's message, the ErrorInfo reason. */
export class RpcError extends Error {
  constructor(error) {
    const failure = ConnectError.from(error);
    super(failure.rawMessage || Code[failure.code]);
    this.code = failure.code;
    this.codeName = Code[failure.code];
    this.reason = failure.findDetails(ErrorInfoSchema)[0]?.reason || "";
  }
}

function callOptions(extra = {}) {
  return { headers: { authorization: `Bearer ${auth.token}` }, ...extra };
}

function failed(error) {
  const failure = new RpcError(error);
  // A refused token will not get better by retrying: back to sign-in.
  if (failure.code === Code.Unauthenticated) auth.onRefused(failure.message);
  return failure;
}

function method(service, name) {
  const descriptor = SERVICES[service].method[name];
  if (!descriptor) throw new Error(`no method ${service}.${name}`);
  return descriptor;
}

/** One unary call: `rpc("notebook", "getNotebook", {notebookId})` → the response's JSON. */
export async function rpc(service, name, request = {}) {
  const { input, output } = method(service, name);
  try {
    const response = await clients[service][name](
      fromJson(input, request),
      callOptions({ timeoutMs: UNARY_TIMEOUT_MS }),
    );
    return toJson(output, response);
  } catch (error) {
    throw failed(error);
  }
}

/**
 * One server stream: each response's JSON goes to `onMessage`; resolves when
 * the server ends it, rejects with an RpcError if it fails. `signal` hangs up.
 */
export async function stream(service, name, request, onMessage, signal) {
  const { input, output } = method(service, name);
  try {
    for await (const response of clients[service][name](
      fromJson(input, request),
      callOptions({ signal }),
    )) {
      onMessage(toJson(output, response));
    }
  } catch (error) {
    if (signal?.aborted) return;
    throw failed(error);
  }
}
