"""Trackers: plugins that implement the run-lifecycle hooks."""
