"""A month of field life on virtual time (issue 14): the engine, the month model, attribution."""
