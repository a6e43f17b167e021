"""Analytics: ingests every topic into ClickHouse (chDB or a server) and serves named queries over HTTP."""
