"""A loopback stand-in for Ace Data Cloud's Luma API (`app`), and `make demo` (`demo`).
`python -m luma_mcp.simulator` serves it. May import: `checks`, `config`."""
