// A minimal MCP Apps host for the browser tests, on the official host side of ext-apps
// (AppBridge) and the official MCP client: it connects to our server over streamable HTTP,
// reads the view a tool names, renders it in a sandboxed iframe under the CSP the resource
// declares (built as the MCP Apps spec tells hosts to), hands it a tool result, and relays the
// view's tool calls to the server, recording each.
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const UI_EXTENSION = "io.modelcontextprotocol/ui";
const APP_MIME = "text/html;profile=mcp-app";

function buildCsp(csp) {
  const resources = ((csp && csp.resourceDomains) || []).join(" ");
  const connect = ((csp && csp.connectDomains) || []).join(" ");
  return [
    "default-src 'none'",
    `script-src 'unsafe-inline' ${resources}`,
    `style-src 'unsafe-inline' ${resources}`,
    `img-src data: ${resources}`,
    `media-src data: ${resources}`,
    `font-src data: ${resources}`,
    `connect-src ${connect || "'none'"}`,
    "frame-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
  ].join("; ");
}

const host = {
  viewCalls: [], // tools the views called, by name
  modelCalls: [], // tools this page called itself, as a model would
  messages: [],
  links: [],
  client: null,
  tools: null,

  async connect(server, key) {
    const client = new Client(
      { name: "luma-mcp test host", version: "1.0.0" },
      { capabilities: { extensions: { [UI_EXTENSION]: { mimeTypes: [APP_MIME] } } } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${server}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }),
    );
    host.client = client;
    host.tools = (await client.listTools()).tools;
    return host.tools.map((t) => ({ name: t.name, meta: t._meta || null }));
  },

  async call(name, args) {
    host.modelCalls.push(name);
    return await host.client.callTool({ name, arguments: args });
  },

  // Render the view bound to `toolName` and hand it `args` and `result`; returns the iframe's id.
  async show(toolName, args, result) {
    const tool = host.tools.find((t) => t.name === toolName);
    const uri = getToolUiResourceUri(tool);
    const read = await host.client.readResource({ uri });
    const content = read.contents[0];
    if (content.mimeType !== APP_MIME) throw new Error(`view served as ${content.mimeType}`);
    const ui = (content._meta && content._meta.ui) || {};
    const csp = `<meta http-equiv="Content-Security-Policy" content="${buildCsp(ui.csp)}">`;
    const html = content.text.replace(/<head>/i, `<head>${csp}`);

    const iframe = document.createElement("iframe");
    iframe.id = `view-${document.querySelectorAll("iframe").length + 1}`;
    iframe.setAttribute("sandbox", "allow-scripts");
    iframe.style.cssText = "width: 640px; height: 420px; border: 0; display: block; margin-bottom: 16px;";
    document.getElementById("views").append(iframe);

    const bridge = new AppBridge(
      null,
      { name: "luma-mcp test host", version: "1.0.0" },
      { openLinks: {}, serverTools: {}, message: { text: {} }, logging: {} },
      { hostContext: { theme: "light", displayMode: "inline", containerDimensions: { maxWidth: 640 } } },
    );
    bridge.oncalltool = async (params) => {
      host.viewCalls.push(params.name);
      return await host.client.callTool(params);
    };
    bridge.onmessage = async (params) => {
      host.messages.push(params);
      return {};
    };
    bridge.onopenlink = async ({ url }) => {
      host.links.push(url);
      return {};
    };
    bridge.addEventListener("sizechange", ({ height }) => {
      if (height != null) iframe.style.height = `${Math.ceil(height)}px`;
    });
    const initialized = new Promise((resolve) => bridge.addEventListener("initialized", resolve));
    await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
    iframe.srcdoc = html;
    await initialized;
    await bridge.sendToolInput({ arguments: args });
    await bridge.sendToolResult(result);
    return iframe.id;
  },
};

window.host = host;
