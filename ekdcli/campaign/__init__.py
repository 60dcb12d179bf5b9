"""Campaigns: ekd sweep (definition, runs, prerequisites, executors) and ekd report (tables, figures, the paper's numbers)."""
