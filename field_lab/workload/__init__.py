"""What happens in the field: the pure, seeded plan of visits, payments, outages and report
reads, and the open-loop runner that starts each action at its planned time."""
