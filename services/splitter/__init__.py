"""The splitter service."""
