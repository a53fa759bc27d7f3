"""The split: one gzip file of JSON-lines sessions to one staged TSV per table (layout.py)."""
