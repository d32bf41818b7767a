"""OpenPAYGO Metrics on the platform: devices report usage and get their tokens back.

wire     parse requests, check signatures (the openpaygo package's routines), expand
ingest   one request as one store transaction: freshness, usage rows, the signed answer
routes   POST /dd, /device_data, /data_format
report   the usage report (GET /v1/reports/usage)
schema   the tables
"""
