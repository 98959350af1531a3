// The player view: follows the tasks of a generate_video / extend_video / get_task result and
// plays them when they are done. It reads the same structured content the model gets, and asks
// the server's app-only tool `view_task_status` about unfinished tasks when the server says to
// (the shared poll schedule), so the video appears without the model calling get_task.
// Nothing here spends money: continuing a video asks the assistant, in the user's name, after
// the user pressed the button.
{
  const { App, applyDocumentTheme, applyHostStyleVariables, applyHostFonts } = ExtApps;
  const STATUS_TOOL = "view_task_status";
  const WATCH_LIMIT_MS = 20 * 60 * 1000; // give up following after 20 minutes (videos take 1-5)
  const MAX_FAILED_CHECKS = 5;
  const FAILED_ADVICE = "Failed tasks are not charged: adjust the prompt or inputs (public image URLs) and submit again.";
  const UNUSABLE_ADVICE = "This is the provider's fault, not the prompt's: tell the server's operator.";
  // Controls (C0 and C1 but tab and newline) and bidi marks, overrides and isolates, in any text
  // the view shows: they are drawn as U+FFFD, so they can neither hide text nor reorder it.
  const HIDDEN = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

  const root = document.getElementById("root");
  const tasks = new Map(); // task_id -> {task, seenAt}
  const tiles = new Map(); // task_id -> {element, status, update}
  let order = [];
  let notFound = [];
  let aspect = "16:9";
  let input = null;
  let nextCheckAt = null;
  let checkTimer = null;
  let failedChecks = 0;
  let watchStarted = Date.now();
  let problem = null;
  let answered = false; // a tool result has arrived (until then: the call's arguments, if any)

  const app = new App({ name: "luma-mcp player", version: "1.0.0" }, {}, { autoResize: true });

  app.ontoolinput = (params) => {
    input = params.arguments || {};
    if (typeof input.aspect_ratio === "string") aspect = input.aspect_ratio;
    if (!order.length) render();
  };
  app.ontoolresult = (result) => show(result);
  app.ontoolcancelled = () => {
    if (!order.length) setProblem("The call was cancelled before it returned a task.");
  };
  app.onhostcontextchanged = (context) => applyHost(context);
  app.onteardown = async () => {
    stopChecking();
    return {};
  };

  function applyHost(context) {
    if (!context) return;
    if (context.theme) applyDocumentTheme(context.theme);
    if (context.styles && context.styles.variables) applyHostStyleVariables(context.styles.variables);
    if (context.styles && context.styles.css && context.styles.css.fonts) applyHostFonts(context.styles.css.fonts);
  }

  function show(result) {
    const data = result.structuredContent;
    if (result.isError || !data) {
      const text = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
      setProblem(text || "The tool returned no task.");
      return;
    }
    const list = Array.isArray(data.tasks) ? data.tasks : data.task_id ? [data] : [];
    answered = true;
    order = list.map((t) => t.task_id);
    notFound = data.not_found || [];
    problem = null;
    watchStarted = Date.now();
    merge(list);
    render();
    checkSoon(0); // answered from the server's memory of its last read: no upstream request
  }

  function merge(list) {
    const now = Date.now();
    for (const task of list) tasks.set(task.task_id, { task, seenAt: now });
  }

  function unfinished() {
    return order.filter((id) => {
      const entry = tasks.get(id);
      return entry && (entry.task.status === "pending" || entry.task.status === "processing");
    });
  }

  function stopChecking() {
    clearTimeout(checkTimer);
    checkTimer = null;
    nextCheckAt = null;
  }

  function checkSoon(seconds) {
    stopChecking();
    if (!unfinished().length) return;
    if (Date.now() - watchStarted > WATCH_LIMIT_MS) {
      setProblem(`Still generating after ${Math.round(WATCH_LIMIT_MS / 60000)} minutes. Ask the assistant to check get_task.`);
      return;
    }
    nextCheckAt = Date.now() + seconds * 1000;
    checkTimer = setTimeout(check, seconds * 1000);
  }

  async function check() {
    const ids = unfinished();
    if (!ids.length) return;
    nextCheckAt = null;
    let result;
    try {
      result = await app.callServerTool({ name: STATUS_TOOL, arguments: { task_ids: ids } });
    } catch (error) {
      result = { isError: true, content: [{ type: "text", text: String(error && error.message ? error.message : error) }] };
    }
    const data = result.structuredContent;
    if (result.isError || !data) {
      failedChecks += 1;
      if (failedChecks >= MAX_FAILED_CHECKS) {
        const text = (result.content || []).map((c) => c.text || "").join(" ");
        setProblem(`Could not check on the video (${text || "no answer"}). Ask the assistant to call get_task.`);
        return;
      }
      checkSoon(Math.min(60, 5 * 2 ** failedChecks));
      updateTiles();
      return;
    }
    failedChecks = 0;
    merge(data.tasks || []);
    render();
    if (data.next_check_seconds != null) checkSoon(Math.max(1, data.next_check_seconds));
  }

  function setProblem(text) {
    problem = text;
    stopChecking();
    render();
  }

  // --- drawing ---------------------------------------------------------------------------

  function plain(text) {
    return String(text).replace(HIDDEN, "\uFFFD");
  }

  // Only an http(s) URL becomes a video source, a poster, a link or an openLink (the server drops
  // others already; this holds for a result from anywhere).
  function webUrl(url) {
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  // Text from the result or the call (a prompt, a provider's message): its own direction, isolated.
  function words(className, text) {
    return text ? el("p", { class: className, dir: "auto" }, text) : null;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) if (child != null) node.append(typeof child === "string" ? plain(child) : child);
    return node;
  }

  function ratio(task) {
    if (task && task.width && task.height) return `${task.width} / ${task.height}`;
    const [w, h] = aspect.split(":").map(Number);
    return w && h ? `${w} / ${h}` : "16 / 9";
  }

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return s >= 60 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : `${s} s`;
  }

  const notes = new Map(); // text -> element, so a redraw keeps the same nodes (and playing videos play on)

  function note(text, className, role) {
    if (!notes.has(text)) notes.set(text, el("p", { class: className, role }, text));
    return notes.get(text);
  }

  function render() {
    const wanted = [];
    if (problem) wanted.push(note(problem, "error", "alert"));
    if (!answered && !problem) {
      if (!tiles.has("")) {
        const prompt = input && input.prompt;
        tiles.set("", { ...waitingTile(null, "Starting the video…", "The first answer comes within seconds.", prompt), status: "starting" });
      }
      wanted.push(tiles.get("").element);
    }
    for (const id of order) {
      const entry = tasks.get(id);
      let tile = tiles.get(id);
      if (!tile || tile.status !== entry.task.status) {
        tile = buildTile(entry.task);
        tiles.set(id, tile);
      }
      wanted.push(tile.element);
    }
    for (const id of notFound) wanted.push(note(`Task ${id}: not found (check the id).`, "note"));
    root.classList.toggle("grid", order.length > 1);
    // Detaching a playing <video> pauses it: touch the page only when its tiles change.
    const same = wanted.length === root.children.length && wanted.every((node, i) => root.children[i] === node);
    if (!same) root.replaceChildren(...wanted);
    updateTiles();
  }

  function updateTiles() {
    for (const id of order) {
      const tile = tiles.get(id);
      if (tile && tile.update) tile.update(tasks.get(id));
    }
  }

  function waitingTile(task, headline, detail, prompt) {
    const big = el("div", { class: "big" }, el("span", { class: "dot", "aria-hidden": "true" }), headline);
    const small = el("div", { class: "small" }, detail);
    const frame = el("div", { class: "frame waiting" }, el("div", {}, big, small));
    frame.style.aspectRatio = ratio(task);
    const meta = el("div", { class: "meta" });
    const element = el(
      "article",
      { class: "tile", "data-task-id": task ? task.task_id : "", "data-status": task ? task.status : "starting" },
      frame,
      el("div", { class: "body" }, words("prompt", prompt), meta),
    );
    return { element, big, small, meta };
  }

  function buildTile(task) {
    if (task.status === "succeeded") return playerTile(task);
    if (task.status === "failed") return failedTile(task);
    const queued = task.status === "pending";
    const parts = waitingTile(task, queued ? "Queued" : "Generating", "", task.prompt);
    return {
      element: parts.element,
      status: task.status,
      update(entry) {
        const elapsed = (entry.task.elapsed_seconds || 0) + (Date.now() - entry.seenAt) / 1000;
        parts.small.textContent = `${clock(elapsed)} so far · videos take 1–5 minutes`;
        const wait = nextCheckAt == null ? null : Math.max(1, Math.ceil((nextCheckAt - Date.now()) / 1000));
        const id = plain(entry.task.task_id);
        parts.meta.textContent = wait == null ? `Task ${id} · checking now…` : `Task ${id} · next check in ${clock(wait)}`;
      },
    };
  }

  function playerTile(task) {
    const url = webUrl(task.video_url);
    if (!url) return failedTile({ ...task, error: { code: "unusable_video_url", message: "The video's URL is not an http(s) address" } });
    const video = el("video", {
      controls: true,
      playsInline: true,
      preload: "metadata",
      poster: webUrl(task.thumbnail_url),
      src: url,
    });
    const frame = el("div", { class: "frame" }, video);
    frame.style.aspectRatio = ratio(task);
    const note = el("span", { class: "note", role: "status" });
    const open = el("a", { class: "button", href: url, target: "_blank", rel: "noopener noreferrer" }, "Open in new tab");
    open.addEventListener("click", (event) => {
      if (app.getHostCapabilities() && app.getHostCapabilities().openLinks) {
        event.preventDefault();
        app.openLink({ url }).catch(() => window.open(url, "_blank", "noopener"));
      }
    });
    const actions = el("div", { class: "actions" }, open);
    if (task.video_id) {
      actions.append(el("button", { type: "button", onclick: () => copy(task.video_id, note) }, "Copy video_id"));
    }
    const size = task.width && task.height ? `${task.width}×${task.height} · ` : "";
    const took = task.elapsed_seconds != null ? `took ${clock(task.elapsed_seconds)} · ` : "";
    const body = el(
      "div",
      { class: "body" },
      words("prompt", task.prompt),
      el("div", { class: "meta" }, `${size}${took}task ${task.task_id}`),
      actions,
      note,
    );
    if (task.video_id) body.append(...continuation(task, actions));
    const element = el("article", { class: "tile", "data-task-id": task.task_id, "data-status": "succeeded" }, frame, body);
    return { element, status: task.status, update: null };
  }

  // Continuing costs a new generation. The view never calls extend_video itself: the button
  // puts the request into the conversation as the user's message, and the assistant makes the
  // call (through the host's own tool approval), knowing the conversation and the new task.
  function continuation(task, actions) {
    const canMessage = Boolean(app.getHostCapabilities() && app.getHostCapabilities().message);
    if (!canMessage) {
      return [el("div", { class: "note" }, "To continue it, ask the assistant: ", el("code", {}, `extend_video(video_id="${task.video_id}")`))];
    }
    const text = el("textarea", { placeholder: "What happens next (optional)", maxLength: 2000, "aria-label": "What happens next" });
    const sent = el("span", { class: "note", role: "status" });
    const send = el("button", { type: "button", class: "primary" }, "Ask the assistant to continue");
    const form = el(
      "div",
      { class: "continue", hidden: true },
      text,
      el("div", { class: "note" }, "Continuing makes a new paid generation of about 5 s; the assistant will call extend_video."),
      el("div", { class: "actions" }, send, sent),
    );
    const toggle = el("button", { type: "button", "aria-expanded": "false" }, "Continue this video…");
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) text.focus();
    });
    send.addEventListener("click", async () => {
      const idea = text.value.trim();
      const call = idea
        ? `extend_video(video_id="${task.video_id}", prompt=${JSON.stringify(idea)})`
        : `extend_video(video_id="${task.video_id}")`;
      send.disabled = true;
      try {
        const answer = await app.sendMessage({ role: "user", content: [{ type: "text", text: `Please continue this video: ${call}` }] });
        sent.textContent = answer && answer.isError ? "The host did not take the message." : "Sent to the assistant.";
      } catch {
        sent.textContent = "The host did not take the message.";
      }
      send.disabled = false;
    });
    actions.append(toggle);
    return [form];
  }

  function failedTile(task) {
    const error = task.error || { message: "The generation failed" };
    const facts = [error.code, error.trace_id ? `trace_id ${error.trace_id}` : null].filter(Boolean).join(", ");
    const frame = el("div", { class: "frame" }, "Generation failed");
    frame.style.aspectRatio = ratio(task);
    const element = el(
      "article",
      { class: "tile failed", "data-task-id": task.task_id, "data-status": "failed" },
      frame,
      el(
        "div",
        { class: "body" },
        words("prompt", task.prompt),
        words("error", `${error.message.replace(/\.$/, "")}${facts ? ` (${facts})` : ""}.`),
        el("div", { class: "note" }, error.code === "unusable_video_url" ? UNUSABLE_ADVICE : FAILED_ADVICE),
        el("div", { class: "meta" }, `task ${task.task_id}`),
      ),
    );
    return { element, status: task.status, update: null };
  }

  async function copy(text, note) {
    try {
      await navigator.clipboard.writeText(text);
      note.textContent = "Copied.";
    } catch {
      const field = el("input", { value: text, readOnly: true, "aria-label": "video_id" });
      note.replaceChildren("Select and copy: ", field);
      field.select();
    }
  }

  setInterval(updateTiles, 1000);
  render();
  app.connect().then(
    () => applyHost(app.getHostContext()),
    (error) => setProblem(`The host did not connect the view: ${error && error.message ? error.message : error}`),
  );
}
