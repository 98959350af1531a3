"""The Luma API through Ace Data Cloud, knowing nothing of MCP: the request and response
bodies (`models`, with `derive_status`, the one status rule), the error tree (`errors`), the
pooled client (`client`) and when a request is tried again (`retries`).
May import: `checks`, `config`."""
