// The assistant as a browser reaches it: AssistantService.Chat over gRPC-Web
// through Envoy with connect-es. test_chat.py scripts the model, runs this and
// checks what it prints.
//
//   node tests/stack/chat_client.mjs BASE_URL TOKEN
//
// Prints one JSON object: the notebook it chatted about, the kind of every
// event of the Chat stream in order, the text of its deltas, and the ChatDone.

import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { AssistantService } from "../../web/gen/reflow/assistant/v1/assistant_pb.js";
import { NotebookService } from "../../web/gen/reflow/notebook/v1/notebook_pb.js";

const DEADLINE_MS = 30_000;

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl || !token) {
  console.error("usage: node chat_client.mjs BASE_URL TOKEN");
  process.exit(2);
}

const transport = createGrpcWebTransport({ baseUrl, fetch: globalThis.fetch });
const notebooks = createClient(NotebookService, transport);
const assistant = createClient(AssistantService, transport);
const signedIn = { headers: { authorization: `Bearer ${token}` }, timeoutMs: DEADLINE_MS };

const created = await notebooks.createNotebook({ name: "chat over gRPC-Web" }, signedIn);
const notebookId = created.notebook.id;

const kinds = [];
let text = "";
let done = null;
for await (const response of assistant.chat(
  { notebookId, message: "Say hello" },
  signedIn,
)) {
  const kind = response.event.case;
  kinds.push(kind);
  if (kind === "textDelta") {
    text += response.event.value.text;
  } else if (kind === "done") {
    done = {
      toolRounds: response.event.value.toolRounds,
      totalTokens: Number(response.event.value.usage?.totalTokens ?? 0),
    };
  }
}

console.log(JSON.stringify({ notebookId, kinds, text, done }));
