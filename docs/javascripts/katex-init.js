// Render the math that pymdownx.arithmatex (generic mode) leaves as \( ... \) and \[ ... \].
// KaTeX 0.19.1 (MIT licence, docs/assets/katex/LICENSE) is vendored from the npm package
// `katex` (dist/katex.min.js, katex.min.css, contrib/auto-render.min.js, fonts/*.woff2), so the
// site renders its formulas offline, with no CDN.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
