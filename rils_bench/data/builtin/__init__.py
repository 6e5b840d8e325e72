"""Built-in datasets prepared offline from packages that carry real data (see `catalog.py`)."""
