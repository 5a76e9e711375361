"""notifiers package."""
