"""Presenting results: terminal tables and progress, reports (Markdown, HTML), plots,
atomic output files."""
