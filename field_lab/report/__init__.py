"""The run report people open in a browser: `results/<run>/report.html`.

`answers` reads a run's summary (the dict written as summary.json) into the three questions,
the invariants and the SLOs; `page` turns those into one self-contained HTML file whose
charts are drawn by `report.js` from data inlined in the page.
"""
