"""Collectors: one module per input format; each parses bytes into Observations without I/O."""
