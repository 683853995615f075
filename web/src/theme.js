/**
 * Light or dark: the system's choice unless the user picked one with the
 * toolbar's button (kept in localStorage). The CSS reads `data-theme` on <html>.
 */

import { byId } from "./dom.js";

const THEME_KEY = "reflow.theme";
const dark = window.matchMedia("(prefers-color-scheme: dark)");

function current() {
  return localStorage.getItem(THEME_KEY) || (dark.matches ? "dark" : "light");
}

function apply() {
  const theme = current();
  document.documentElement.dataset.theme = theme;
  const button = byId("theme");
  button.textContent = theme === "dark" ? "☀" : "☾";
  button.title = theme === "dark" ? "Switch to the light theme" : "Switch to the dark theme";
}

export function setupTheme() {
  apply();
  dark.addEventListener("change", apply);
  byId("theme").addEventListener("click", () => {
    localStorage.setItem(THEME_KEY, current() === "dark" ? "light" : "dark");
    apply();
  });
}
