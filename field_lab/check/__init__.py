"""The judge: one set of checks over public evidence only, for the lab, the crash harness and
the network-fault suite alike (see docs/judge.md for what it trusts and why)."""
