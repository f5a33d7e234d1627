"""Reports and plots: tables, pages and PNGs made from runs' results.

Only the entry points that write a report import this package; importing
the rest of `research` loads no matplotlib. `render` holds the shared
pieces (tables, CSV, figures), `results_page` gathers docs/results.md, and
one module per study renders its report.
"""
