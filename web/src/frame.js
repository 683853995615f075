/**
 * The output frame (static/frame.html): shows one untrusted output that needs
 * more than the page allows itself. A Plotly or Vega/Vega-Lite chart is drawn
 * by its own library, bundled here (nothing from a CDN); HTML is shown with
 * its own styles. The frame is sandboxed with an opaque origin (scripts
 * allowed, same-origin not), so what a kernel sent can reach nothing of the
 * page (its token, its storage), and its policy (frame.html) runs no inline
 * script, so HTML cannot run code either.
 * The page posts {mime, spec} or {mime, html}; the frame answers with the
 * height it drew, so the page can size it.
 */

import Plotly from "plotly.js-dist-min";
import vegaEmbed from "vega-embed";

const target = document.getElementById("chart");

function reportHeight() {
  parent.postMessage({ type: "frame-drawn", height: Math.ceil(document.documentElement.scrollHeight) }, "*");
}

/** HTML, parsed inert (no script runs) and moved in, its <style>s included. */
function showHtml(html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  for (const script of parsed.querySelectorAll("script")) script.remove();
  document.head.append(...parsed.head.childNodes);
  target.replaceChildren(...parsed.body.childNodes);
}

async function draw({ mime, spec, html }) {
  target.replaceChildren();
  try {
    if (mime === "text/html") {
      showHtml(html || "");
    } else if (mime.includes("plotly")) {
      const figure = spec || {};
      await Plotly.newPlot(target, figure.data || [], figure.layout || {}, {
        displaylogo: false,
        responsive: true,
      });
    } else {
      await vegaEmbed(target, spec, { actions: false, mode: mime.includes("vegalite") ? "vega-lite" : "vega" });
    }
    target.dataset.drawn = "true";
  } catch (error) {
    target.textContent = `This output cannot be shown: ${error.message}`;
  }
  reportHeight();
}

window.addEventListener("message", (event) => {
  if (event.source !== parent || !event.data || event.data.type !== "show") return;
  draw(event.data);
});
parent.postMessage({ type: "frame-ready" }, "*");
