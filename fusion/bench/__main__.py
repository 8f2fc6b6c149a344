"""``python -m fusion.bench probe '<json spec>'``: the child process of :func:`fusion.bench.probe.run_probe`."""
from __future__ import annotations

import json
import sys

from fusion.bench.probe import jsonable, probe

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        print(json.dumps(jsonable(probe(json.loads(sys.argv[2])))))
    else:
        sys.exit("usage: python -m fusion.bench probe '<json spec>' (internal; use `python -m fusion bench`)")
