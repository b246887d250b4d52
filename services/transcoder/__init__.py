"""The transcoder service."""
