"""kstream_lab."""
