"""The SQL files (schema per dialect, queries by name), shipped as package data."""
