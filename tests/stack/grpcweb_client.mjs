// A browser's view of Reflow: gRPC-Web through Envoy with connect-es, the
// client library a web front end would use, run by Node (whose fetch is the
// same API a browser has). test_grpcweb.py runs it and checks what it prints.
//
//   node tests/stack/grpcweb_client.mjs BASE_URL TOKEN
//
// Prints one JSON object: the notebook it created, the text its two cells
// printed when run (a server stream), the snapshot WatchNotebook streamed
// first, and how a missing notebook and a missing token failed (codes and
// decoded google.rpc.ErrorInfo details).

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema } from "../../web/gen/google/rpc/error_details_pb.js";
import { ExecutionService } from "../../web/gen/reflow/execution/v1/execution_pb.js";
import { NotebookService } from "../../web/gen/reflow/notebook/v1/notebook_pb.js";

const DEADLINE_MS = 30_000;

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl || !token) {
  console.error("usage: node grpcweb_client.mjs BASE_URL TOKEN");
  process.exit(2);
}

const transport = createGrpcWebTransport({ baseUrl, fetch: globalThis.fetch });
const notebooks = createClient(NotebookService, transport);
const execution = createClient(ExecutionService, transport);
const signedIn = { headers: { authorization: `Bearer ${token}` }, timeoutMs: DEADLINE_MS };

function describeError(error) {
  const failure = ConnectError.from(error);
  const [info] = failure.findDetails(ErrorInfoSchema);
  return {
    code: Code[failure.code],
    message: failure.rawMessage,
    errorInfo: info ? { reason: info.reason, domain: info.domain, metadata: info.metadata } : null,
  };
}

async function failureOf(call) {
  try {
    await call();
  } catch (error) {
    return describeError(error);
  }
  return { code: "OK" };
}

// Unary.
const created = await notebooks.createNotebook({ name: "from gRPC-Web" }, signedIn);
const notebookId = created.notebook.id;
const first = await notebooks.createCell({ notebookId, code: "x = 1" }, signedIn);
await notebooks.createCell({ notebookId, code: "print(x + 1)" }, signedIn);

// Server stream: running the first cell runs its dependant too.
const eventKinds = [];
let stdout = "";
for await (const response of execution.runCells(
  { notebookId, cellIds: [first.cell.id] },
  signedIn,
)) {
  const kind = response.event?.event.case;
  eventKinds.push(kind);
  if (kind === "streamChunk") {
    stdout += response.event.event.value.text;
  }
}

// Server stream that never ends by itself: take the snapshot, then hang up.
const hangUp = new AbortController();
let snapshot = null;
for await (const response of notebooks.watchNotebook(
  { notebookId },
  // No deadline (its timer would keep Node alive after we hang up): the
  // abort ends the call.
  { headers: signedIn.headers, signal: hangUp.signal },
)) {
  if (response.event.case === "snapshot") {
    snapshot = { id: response.event.value.id, cells: response.event.value.cells.length };
  }
  hangUp.abort();
  break;
}

// Errors, with their details.
const missing = await failureOf(() =>
  notebooks.getNotebook({ notebookId: "no-such-notebook" }, signedIn),
);
const anonymous = await failureOf(() =>
  notebooks.listNotebooks({}, { timeoutMs: DEADLINE_MS }),
);

console.log(
  JSON.stringify({
    created: { id: notebookId, name: created.notebook.name },
    eventKinds,
    stdout,
    snapshot,
    missing,
    anonymous,
  }),
);
