"""agent_client: see DESIGN.md for what this package will hold."""
