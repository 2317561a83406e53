"""images package (see ARCHITECTURE.md)."""
