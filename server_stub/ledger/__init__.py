"""The platform's rules without I/O: given an operation and the state it touches, decide the
effects or the refusal. `Store` reads the state, asks here, and applies the answer in one
transaction; nothing in this package opens a file, a socket or a clock."""
