"""The pusher service."""
