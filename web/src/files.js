/**
 * The files panel: the notebook's files, which are its kernel's current
 * directory (ListFiles, PutFile, GetFile, DeleteFile over gRPC-Web). Files
 * are uploaded by picking them or dropping them on the panel, into the
 * folder typed above the list; each can be downloaded or deleted. Files a
 * cell writes show up after its run, so the list is read again whenever a
 * run ends while the panel is open.
 */

import { download, fromBase64, humanSize, toBase64 } from "./download.js";
import { h, notify } from "./dom.js";

export class FilesPanel {
  constructor(session) {
    this.session = session;
    this.list = h("ul", { class: "file-list", "aria-label": "Files" });
    this.usage = h("p", { class: "muted file-usage" });
    this.folder = h("input", {
      type: "text",
      class: "file-folder",
      placeholder: "folder (optional), e.g. data",
      "aria-label": "Folder to upload into",
      maxlength: 200,
    });
    this.picker = h("input", { type: "file", multiple: true, class: "file-picker", "aria-label": "Upload files" });
    this.picker.addEventListener("change", () => {
      this.upload([...this.picker.files]);
      this.picker.value = "";
    });
    this.root = h(
      "div",
      { class: "files" },
      h("p", { class: "muted", text: "The kernel's current directory: cells open these by path, and files they write appear here." }),
      h("div", { class: "file-upload" }, this.folder, this.picker),
      this.list,
      this.usage,
    );
    this.root.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types.includes("Files")) return;
      event.preventDefault();
      this.root.classList.add("drop-target");
    });
    this.root.addEventListener("dragleave", () => this.root.classList.remove("drop-target"));
    this.root.addEventListener("drop", (event) => {
      this.root.classList.remove("drop-target");
      if (!event.dataTransfer?.files.length) return;
      event.preventDefault();
      this.upload([...event.dataTransfer.files]);
    });
  }

  /** Read the listing again (on open, after a change, after a run). */
  async refresh() {
    const reply = await this.session.call("notebook", "listFiles", {}, "Listing the files");
    if (!reply) return;
    const files = reply.files || [];
    this.list.replaceChildren(
      ...(files.length ? files.map((file) => this.item(file)) : [h("li", { class: "muted", text: "No files yet." })]),
    );
    this.usage.textContent = `Your files take ${humanSize(reply.usedBytes)} of ${humanSize(reply.quotaBytes)}; one file may have up to ${humanSize(reply.maxFileBytes)}.`;
  }

  item(file) {
    return h(
      "li",
      { class: "file-item", "data-path": file.path },
      h("span", { class: "file-path", text: file.path }),
      h("span", { class: "muted", text: humanSize(file.sizeBytes) }),
      h("button", { type: "button", class: "link", text: "Download", onclick: () => this.fetch(file.path) }),
      h("button", { type: "button", class: "link danger", text: "Delete", onclick: () => this.remove(file.path) }),
    );
  }

  async upload(files) {
    const folder = this.folder.value.trim().replace(/^\/+|\/+$/g, "");
    for (const file of files) {
      const path = folder ? `${folder}/${file.name}` : file.name;
      const content = toBase64(new Uint8Array(await file.arrayBuffer()));
      if (await this.session.call("notebook", "putFile", { path, content }, `Uploading ${path}`)) {
        notify(`Uploaded ${path}.`);
      }
    }
    await this.refresh();
  }

  async fetch(path) {
    const reply = await this.session.call("notebook", "getFile", { path }, `Downloading ${path}`);
    if (reply) download(path.split("/").pop(), "application/octet-stream", fromBase64(reply.content));
  }

  async remove(path) {
    if (!confirm(`Delete ${path}?`)) return;
    if (await this.session.call("notebook", "deleteFile", { path }, `Deleting ${path}`)) await this.refresh();
  }
}
