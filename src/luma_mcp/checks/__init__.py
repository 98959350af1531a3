"""Rules on values, for every room: what a bearer token may hold, plain text, public URLs and
addresses, and connection strings as they may be shown. Imports nothing else of luma_mcp."""
