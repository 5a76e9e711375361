"""Pure analytics: no asyncio, sqlite3, network or UI imports (a test enforces it)."""
