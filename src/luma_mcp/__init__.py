"""luma-mcp: an MCP server that makes videos with Luma Dream Machine through Ace Data Cloud."""

# The one place the version lives (pyproject reads it from here). A literal rather than
# importlib.metadata: that import alone costs ~80 ms of every host's cold start.
__version__ = "0.1.0"

__all__ = ["__version__"]
