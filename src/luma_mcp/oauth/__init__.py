"""The sign-in for web connectors (claude.ai, ChatGPT; `LUMA_MCP_OAUTH`), imported only when it
is on: the authorization server's rules (`provider`, `client_rules`, `client_documents`), its
grants in the ledger (`grants`, sealed with `sealing`), the pages a person sees (`signin`,
`pages`) and the routes (`routes`).
May import: `checks`, `config`, `api`, `core`."""
