"""What the tools do, without MCP: who a call is for (`caller`), the process's shared state
(`state`), reading, waiting and listing (`service`, `waiting`), submitting once
(`submitting`, `callback_urls`), saving a video (`saving`, `download`, `guarded_http`), what
the model reads (`results`), and the task ledger (`ledger/`). Tested as plain functions.
May import: `checks`, `config`, `api`."""
