"""The web demo: one self-contained page (no CDN: these machines and many labs are offline) that the
server itself serves at `/`. It sends the whole conversation to /v1/chat/completions with
`stream: true` and shows the answer as the server-sent events arrive, like any OpenAI client would.

Gradio would bring a large dependency and front-end assets fetched at run time; this page is ~150
lines and exercises exactly the public API.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

_PAGE = r"""<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xllava · __NAME__</title>
<style>
  body { font-family: system-ui, "Noto Sans CJK KR", "Malgun Gothic", sans-serif; margin: 0; background: #f4f5f7; }
  header { background: #243447; color: #fff; padding: 10px 18px; font-size: 18px; }
  header small { opacity: .7; margin-left: 8px; }
  main { display: flex; gap: 16px; padding: 16px; max-width: 1100px; margin: auto; }
  #side { width: 300px; flex: none; }
  #side .card, #chat { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 3px #0002; }
  #preview { width: 100%; min-height: 120px; image-rendering: pixelated; background: #eee; border-radius: 6px;
             display: block; margin-top: 8px; object-fit: contain; }
  #chat { flex: 1; display: flex; flex-direction: column; min-height: 480px; }
  #log { flex: 1; overflow-y: auto; }
  .msg { margin: 8px 0; padding: 8px 12px; border-radius: 8px; white-space: pre-wrap; max-width: 85%; }
  .user { background: #dbeafe; margin-left: auto; }
  .assistant { background: #eef0f2; }
  .error { background: #fde2e2; color: #8a1c1c; }
  .note { color: #666; font-size: 13px; text-align: center; }
  form { display: flex; gap: 8px; margin-top: 8px; }
  textarea { flex: 1; font: inherit; padding: 8px; border-radius: 6px; border: 1px solid #ccc; resize: vertical; }
  button { font: inherit; padding: 8px 16px; border: 0; border-radius: 6px; background: #2563eb; color: #fff; cursor: pointer; }
  button:disabled { background: #9ca3af; }
  label { display: block; font-size: 13px; color: #444; margin-top: 10px; }
  input[type=number], input[type=password] { width: 100%; box-sizing: border-box; padding: 4px; }
</style>
</head>
<body>
<header>xllava <small>__NAME__</small></header>
<main>
  <div id="side">
    <div class="card">
      <label for="file">Image · 이미지</label>
      <input id="file" type="file" accept="image/*">
      <img id="preview" alt="">
      <label for="temperature">Temperature</label>
      <input id="temperature" type="number" min="0" max="2" step="0.1" value="0">
      <label for="max_tokens">Max tokens</label>
      <input id="max_tokens" type="number" min="1" step="1" value="128">
      __KEY__
      <p><button id="reset" type="button">New chat · 새 대화</button></p>
    </div>
  </div>
  <div id="chat">
    <div id="log"><p class="note">Upload an image, then ask in Korean or English. · 이미지를 올리고 한국어나 영어로 물어보세요.</p></div>
    <form id="form">
      <textarea id="prompt" rows="2" placeholder="Ask about the image… · 이미지에 대해 물어보세요…"></textarea>
      <button id="send" type="submit">Send · 보내기</button>
    </form>
  </div>
</main>
<script>
const MODEL = __MODEL__;
const $ = (id) => document.getElementById(id);
let messages = [], image = null, imageSent = false, busy = false;

function bubble(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}
function reset(note) {
  messages = []; imageSent = false;
  $("log").innerHTML = "";
  if (note) { const p = document.createElement("p"); p.className = "note"; p.textContent = note; $("log").appendChild(p); }
}
$("reset").onclick = () => reset("New conversation · 새 대화");
$("file").onchange = () => {
  const f = $("file").files[0];
  if (!f) return;
  const reader = new FileReader();
  reader.onload = () => {
    image = reader.result; $("preview").src = image;
    reset("New image: " + f.name + " · 새 이미지");
  };
  reader.readAsDataURL(f);
};
$("prompt").addEventListener("keydown", (e) => {
  // Enter sends, Shift+Enter breaks the line; never while a Korean IME is still composing a syllable
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault(); $("form").requestSubmit();
  }
});
$("form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || busy) return;
  const content = [];
  if (image && !imageSent) { content.push({type: "image_url", image_url: {url: image}}); imageSent = true; }
  content.push({type: "text", text});
  messages.push({role: "user", content});
  bubble("user", text);
  $("prompt").value = "";
  const out = bubble("assistant", "");
  busy = true; $("send").disabled = true;
  let answer = "";
  try {
    const headers = {"Content-Type": "application/json"};
    const key = $("key") ? $("key").value : "";
    if (key) headers["Authorization"] = "Bearer " + key;
    const resp = await fetch("/v1/chat/completions", {method: "POST", headers, body: JSON.stringify({
      model: MODEL, messages, stream: true,
      temperature: Number($("temperature").value), max_tokens: Number($("max_tokens").value)})});
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try { msg = (await resp.json()).error.message; } catch (_) {}
      throw new Error(msg);
    }
    const reader = resp.body.getReader(), decoder = new TextDecoder();
    let buf = "", finished = false;
    while (!finished) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim(); buf = buf.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") { finished = true; break; }
        const obj = JSON.parse(data);
        if (obj.error) throw new Error(obj.error.message);
        const delta = obj.choices && obj.choices[0] && obj.choices[0].delta.content;
        if (delta) { answer += delta; out.textContent = answer; }
      }
    }
    messages.push({role: "assistant", content: answer});
  } catch (err) {
    out.className = "msg error"; out.textContent = "Error: " + err.message;
    // the question was not answered: leave it out of the history (and send its image again)
    const lost = messages.pop();
    if (lost.content.some((p) => p.type === "image_url")) imageSent = false;
  } finally {
    out.dataset.done = "1";
    busy = false; $("send").disabled = false;
  }
};
</script>
</body>
</html>
"""

_KEY_FIELD = '<label for="key">API key</label><input id="key" type="password" autocomplete="off">'


def demo_page(model_name: str, needs_key: bool) -> str:
    return (
        _PAGE.replace("__NAME__", html.escape(model_name))
        .replace("__MODEL__", json.dumps(model_name).replace("<", "\\u003c"))
        .replace("__KEY__", _KEY_FIELD if needs_key else "")
    )


def _hash_source(body: str, tag: str) -> str:
    """CSP's hash source for the page's one inline <tag> block (hashed exactly as the browser reads it)."""
    start = body.index(f"<{tag}>") + len(tag) + 2
    content = body[start:body.index(f"</{tag}>", start)]
    return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode()).digest()).decode() + "'"


def page_headers(body: str) -> dict[str, str]:
    """Headers for the demo page: only its own inline script and style run (by hash, no
    'unsafe-inline'), it talks only to this server, and no other site may frame it (clickjacking)."""
    csp = "; ".join([
        "default-src 'none'",
        f"script-src {_hash_source(body, 'script')}",
        f"style-src {_hash_source(body, 'style')}",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
