"""The stdio transport for a desktop host: reading and writing the protocol's lines (`wire`)
and stopping promptly on SIGINT/SIGTERM (`transport`).
May import: `checks`, `config`, `api`, `core`."""
