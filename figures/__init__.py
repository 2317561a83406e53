"""figures package (see ARCHITECTURE.md)."""
