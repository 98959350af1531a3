"""luma-mcp: an MCP server that makes videos with Luma Dream Machine through Ace Data Cloud."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("luma-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
