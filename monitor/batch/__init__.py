"""Batch checks at the file edge: CSV/Parquet/profile reading, ``driftline check``,
rendering and the Evidently report."""
