"""The drop: where Monetate writes Session Stream files (URL and file types in base.py, one module
per transport, opener.py to open one), the settle policy, the admin roots and the file names."""
