"""The Monetate Metadata API: its client, the lookup tables, their atomic refresh."""
