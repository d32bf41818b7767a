"""server_stub: see DESIGN.md for what this package will hold."""
