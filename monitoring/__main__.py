"""Writes what k8s/components/observability provisions: the dashboards' JSON (from
monitoring/dashboards.py) and the PrometheusRule wrapping monitoring/alerts.yml.

    python -m monitoring          # write them
    python -m monitoring --check  # fail if the committed ones are stale (the tests do this too)
"""

from __future__ import annotations

import sys

from monitoring.generate import stale, write

if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        old = stale()
        if old:
            sys.exit(f"stale, run `python -m monitoring`: {', '.join(old)}")
    else:
        for path in write():
            print(f"wrote {path}")
