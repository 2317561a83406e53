"""toy package (see ARCHITECTURE.md)."""
