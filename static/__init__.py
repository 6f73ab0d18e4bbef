"""The page and the browser client, shipped as package data (no Python here)."""
