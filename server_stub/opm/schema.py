"""The platform's OpenPAYGO Metrics tables (created with the store's own schema)."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS opm_formats (
    format INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS opm_devices (
    device INTEGER PRIMARY KEY, last_rc INTEGER, last_ts INTEGER,
    token_cursor INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0,
    tokens_sent INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0,
    token_count INTEGER, energy_wh REAL, hours_of_use REAL,
    first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS opm_rows (
    device INTEGER NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL, received_ms INTEGER NOT NULL,
    PRIMARY KEY (device, ts)
) WITHOUT ROWID;
"""
