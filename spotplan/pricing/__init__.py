"""Price data: the price table format (DESIGN.md §4.2), the bundled snapshot, the local store,
live pulls and importers of public formats."""
