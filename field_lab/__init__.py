"""field_lab: see DESIGN.md for what this package will hold."""
