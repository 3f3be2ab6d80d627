"""The labelling page: one self-contained HTML file (no build step, no external assets)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NanoNet labelling</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.2rem; font-weight: 600; margin: 0 0 1rem; }
  #text { background: #fff; border: 1px solid #d5d9e0; border-radius: 8px; padding: 1.25rem;
          font-size: 1.15rem; line-height: 1.5; min-height: 6rem; white-space: pre-wrap;
          max-height: 50vh; overflow-y: auto; }
  #classes { display: flex; flex-wrap: wrap; gap: .5rem; margin: 1rem 0; }
  button { font: inherit; padding: .55rem 1rem; border-radius: 6px; border: 1px solid #9aa3b2;
           background: #fff; cursor: pointer; }
  button.cls { border-color: #2f5fd0; color: #1d3f91; font-weight: 600; }
  button:focus-visible { outline: 3px solid #f0a400; outline-offset: 2px; }
  button:disabled { opacity: .45; cursor: default; }
  kbd { font-size: .8em; border: 1px solid #9aa3b2; border-radius: 3px; padding: 0 .3em;
        margin-right: .35em; background: #eef0f4; }
  #progress { display: flex; flex-wrap: wrap; gap: 1rem; font-size: .95rem; margin: .5rem 0; }
  .bar { display: inline-block; height: .6rem; background: #2f5fd0; border-radius: 3px;
         vertical-align: middle; margin-left: .3rem; }
  #status { min-height: 1.4rem; color: #52607a; }
  .done { color: #1c7c3c; font-weight: 600; }
</style>
</head>
<body>
<h1>NanoNet labelling <span id="round"></span></h1>
<div id="text" role="region" aria-live="polite" aria-label="text to label">loading...</div>
<div id="classes" role="group" aria-label="classes"></div>
<div>
  <button id="skip" title="skip this text"><kbd>s</kbd>skip</button>
  <button id="undo" title="undo the last answer"><kbd>u</kbd>undo</button>
  <button id="train" title="train a model on the labels so far"><kbd>t</kbd>train now</button>
</div>
<div id="progress" aria-live="polite"></div>
<div id="status" aria-live="polite"></div>
<script>
let state = null;
const $ = (id) => document.getElementById(id);

async function call(method, path, body) {
  const r = await fetch(path, {method, headers: {"content-type": "application/json"},
                               body: body ? JSON.stringify(body) : undefined});
  const data = await r.json();
  if (!r.ok) { $("status").textContent = data.detail || ("error " + r.status); return null; }
  return data;
}

function render(s) {
  if (!s) return;
  state = s;
  $("round").textContent = "· round " + s.round;
  $("text").textContent = s.current ? s.current.text : "Nothing left to label in this round.";
  $("text").dataset.row = s.current ? s.current.row : "";
  const box = $("classes");
  box.innerHTML = "";
  s.classes.forEach((c, i) => {
    const b = document.createElement("button");
    b.className = "cls";
    b.dataset.label = c;
    b.innerHTML = (i < 9 ? "<kbd>" + (i + 1) + "</kbd>" : "") ;
    b.appendChild(document.createTextNode(c));
    b.disabled = !s.current;
    b.onclick = () => answer(c);
    box.appendChild(b);
  });
  $("skip").disabled = !s.current;
  $("undo").disabled = !s.can_undo;
  const t = s.training;
  $("train").disabled = t.state === "running" || t.state === "suggesting";
  const most = Math.max(1, ...Object.values(s.counts));
  $("progress").innerHTML = "";
  for (const [c, n] of Object.entries(s.counts)) {
    const span = document.createElement("span");
    span.textContent = c + ": " + n;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = (4 * n / most) + "rem";
    span.appendChild(bar);
    $("progress").appendChild(span);
  }
  const extra = document.createElement("span");
  extra.textContent = "skipped: " + s.skipped + " · left in this round: " + s.remaining;
  $("progress").appendChild(extra);
  const words = {idle: "", running: "training on your labels...",
                 suggesting: "trained; choosing what to ask next...",
                 done: "trained " + (t.model || "") + "; now asking what it is least sure of.",
                 failed: "training failed: " + (t.error || "")};
  $("status").textContent = words[t.state] || "";
  $("status").className = t.state === "done" ? "done" : "";
}

async function refresh() { render(await call("GET", "/api/state")); }
async function answer(label) {
  if (!state || !state.current) return;
  render(await call("POST", "/api/answer", {row: state.current.row, label: label}));
}
async function skip() { await answer(null); }
async function undo() { render(await call("POST", "/api/undo")); }
async function train() { render(await call("POST", "/api/train")); poll(); }
function poll() {
  setTimeout(async () => {
    await refresh();
    if (state && ["running", "suggesting"].includes(state.training.state)) poll();
  }, 1000);
}

$("skip").onclick = skip;
$("undo").onclick = undo;
$("train").onclick = train;
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || !state) return;
  if (e.key >= "1" && e.key <= "9") {
    const c = state.classes[Number(e.key) - 1];
    if (c !== undefined) { e.preventDefault(); answer(c); }
  } else if (e.key === "s") { e.preventDefault(); skip(); }
  else if (e.key === "u") { e.preventDefault(); undo(); }
  else if (e.key === "t") { e.preventDefault(); train(); }
});
refresh().then(() => {
  if (state && ["running", "suggesting"].includes(state.training.state)) poll();
});
</script>
</body>
</html>
"""
