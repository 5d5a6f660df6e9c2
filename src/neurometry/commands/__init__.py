"""CLI commands that need more than a few lines each."""
