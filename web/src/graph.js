/**
 * The dependency view: the notebook's graph as the contract gives it (each
 * cell's parents and children), drawn as an arc diagram. Cells stand in
 * notebook order; an arc on the left joins a cell to each cell that depends on it, so a
 * chain reads top to bottom. A node names the cell's number and what it
 * defines; clicking it shows the cell.
 */

const SVG = "http://www.w3.org/2000/svg";
const ROW = 34;
const TOP = 18;
const NODE_X = 150;

function svg(tag, attributes = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text) node.textContent = text;
  return node;
}

/** An <svg> of the notebook's graph. */
export function drawGraph(session) {
  const order = session.order;
  const row = new Map(order.map((id, index) => [id, index]));
  const height = TOP * 2 + Math.max(0, order.length - 1) * ROW;
  const drawing = svg("svg", { class: "graph", width: "100%", height, role: "img", "aria-label": "Dependency graph" });
  const arcs = svg("g", { class: "arcs" });
  const nodes = svg("g", { class: "nodes" });
  drawing.append(arcs, nodes);
  let edges = 0;
  order.forEach((id, index) => {
    const view = session.views.get(id);
    const y = TOP + index * ROW;
    for (const child of view.cell.childIds || []) {
      if (!row.has(child)) continue;
      const y2 = TOP + row.get(child) * ROW;
      const bend = NODE_X - Math.min(NODE_X - 6, 14 + Math.abs(y2 - y) * 0.6);
      arcs.append(
        svg("path", {
          class: "edge",
          d: `M ${NODE_X} ${y} C ${bend} ${y}, ${bend} ${y2}, ${NODE_X} ${y2}`,
          "data-from": index + 1,
          "data-to": row.get(child) + 1,
        }),
      );
      edges++;
    }
    const writes = (view.cell.writes || []).join(", ");
    const label = `cell ${index + 1}${writes ? ` · ${writes}` : ""}`;
    const node = svg("g", { class: `node status-${view.root.dataset.status || "none"}`, tabindex: "0", "data-cell": index + 1 });
    node.append(svg("circle", { cx: NODE_X, cy: y, r: 7 }), svg("text", { x: NODE_X + 14, y: y + 4 }, label));
    node.addEventListener("click", () => view.reveal());
    nodes.append(node);
  });
  drawing.dataset.edges = String(edges);
  return drawing;
}
