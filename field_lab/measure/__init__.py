"""Measurement: latency histograms, Jepsen-style histories and checkers, k6-style SLOs."""
