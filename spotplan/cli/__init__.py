"""The Typer command-line layer: one module per command group. Parses, calls the core, renders."""
