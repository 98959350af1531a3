"""The sign-in for web connectors (claude.ai, ChatGPT; `LUMA_MCP_OAUTH`), imported only when it
is on: the authorization server's rules (`provider`, `client_rules`), clients named by their
metadata documents (`client_documents`, with `client_document_rules`, `client_document_fetch`
and `fetch_slots`), its grants in the ledger (`grants`, sealed with `sealing`), the pages a
person sees (`signin`, `pages`) and the routes (`routes`).
May import: `checks`, `config`, `api`, `core`."""
